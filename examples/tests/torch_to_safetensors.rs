//! The torch_to_safetensors example on the torch fixtures: every tensor of
//! the safetensors file it writes holds the values torch saved.

use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use serde_json::Value as Json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/torch")
}

/// IEEE half to f64 (exact).
fn half(bits: u16) -> f64 {
    let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f64::from(bits & 0x3ff);
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// The elements of a safetensors tensor as f64, whatever their dtype.
fn values(dtype: Dtype, data: &[u8]) -> Vec<f64> {
    let le = |n: usize| data.chunks_exact(n).map(|c| c.to_vec());
    match dtype {
        Dtype::BOOL | Dtype::U8 => data.iter().map(|&b| f64::from(b)).collect(),
        Dtype::I32 => le(4)
            .map(|c| f64::from(i32::from_le_bytes(c.try_into().unwrap())))
            .collect(),
        Dtype::I64 => le(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        Dtype::F16 => le(2)
            .map(|c| half(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => le(2)
            .map(|c| {
                f64::from(f32::from_bits(
                    u32::from(u16::from_le_bytes([c[0], c[1]])) << 16,
                ))
            })
            .collect(),
        Dtype::F32 => le(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
            .collect(),
        Dtype::F64 => le(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        other => panic!("no fixture has {other:?}"),
    }
}

fn convert(file: &str, prefix: &str) {
    let out =
        std::env::temp_dir().join(format!("reduce-{}-{file}.safetensors", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_torch_to_safetensors"))
        .arg(fixtures().join(file))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "{file}: {status}");
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let expected: Json =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let mut seen = 0;
    for row in expected["files"][file].as_array().unwrap() {
        // Rows are torch paths, ['name'] or ['model']['name'].
        let path = row["path"].as_str().unwrap();
        let Some(name) = path
            .strip_prefix(prefix)
            .and_then(|p| p.strip_prefix("['"))
            .and_then(|p| p.strip_suffix("']"))
        else {
            continue;
        };
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("{file}: {name}: {e}"));
        let shape: Vec<usize> = row["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.shape(), shape.as_slice(), "{file}: {name}");
        let want: Vec<f64> = row["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                v.as_f64()
                    .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
                    .unwrap()
            })
            .collect();
        assert_eq!(values(t.dtype(), t.data()), want, "{file}: {name}");
        seen += 1;
    }
    assert_eq!(st.len(), seen, "{file}: every tensor checked");
    assert!(seen >= 4, "{file}: {seen} tensors");
}

#[test]
fn state_dicts_convert_with_torchs_values() {
    convert("state_dict.pt", "");
    convert("state_dict_legacy.pt", "");
}

#[test]
fn a_training_checkpoint_converts_its_model() {
    convert("checkpoint.pt", "['model']");
}

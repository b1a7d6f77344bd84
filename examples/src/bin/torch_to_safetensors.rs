//! Convert a PyTorch checkpoint to a safetensors file, without Python.
//!
//! Run: `cargo run -p reduce-examples --bin torch_to_safetensors -- model.pt model.safetensors`
//!
//! Reads the `torch.save` file (zip or legacy format) as strictly as
//! `torch.load(weights_only=True)`, takes its state dict, and writes every
//! tensor, contiguous, under its name. Views that shared a storage in the
//! checkpoint become separate tensors, as safetensors has no views.

use reduce::torch::{self, DType};
use safetensors::tensor::{Dtype, TensorView};

fn dtype(d: DType) -> Option<Dtype> {
    Some(match d {
        DType::Bool => Dtype::BOOL,
        DType::UInt8 => Dtype::U8,
        DType::Int8 => Dtype::I8,
        DType::Int16 => Dtype::I16,
        DType::Int32 => Dtype::I32,
        DType::Int64 => Dtype::I64,
        DType::UInt16 => Dtype::U16,
        DType::UInt32 => Dtype::U32,
        DType::UInt64 => Dtype::U64,
        DType::Float16 => Dtype::F16,
        DType::BFloat16 => Dtype::BF16,
        DType::Float32 => Dtype::F32,
        DType::Float64 => Dtype::F64,
        DType::Float8E4M3Fn => Dtype::F8_E4M3,
        DType::Float8E5M2 => Dtype::F8_E5M2,
        _ => return None,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        return Err("usage: torch_to_safetensors <checkpoint.pt> <out.safetensors>".into());
    };
    let checkpoint = torch::load(input)?;
    let state_dict = checkpoint.state_dict()?;
    // Each tensor's elements, row-major: borrowed when contiguous (an
    // expanded view far larger than its storage is refused).
    let data = state_dict
        .iter()
        .map(|(_, t)| t.bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let mut views = Vec::with_capacity(state_dict.len());
    for ((name, t), bytes) in state_dict.iter().zip(&data) {
        let d = dtype(t.dtype())
            .ok_or_else(|| format!("{name}: safetensors has no dtype for {}", t.dtype()))?;
        views.push((name.clone(), TensorView::new(d, t.shape().to_vec(), bytes)?));
    }
    safetensors::serialize_to_file(views, &None, output.as_ref())?;
    println!(
        "{input} ({:?} format): {} tensors written to {output}",
        checkpoint.format(),
        state_dict.len()
    );
    Ok(())
}

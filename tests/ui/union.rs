use reduce::Reduce;

#[derive(Reduce)]
union Bits {
    f: f32,
    u: u32,
}

fn main() {}

use reduce::Reduce;

#[derive(Reduce)]
struct Blob {
    #[reduce(bytes, with = "reduce::bytes")]
    data: Vec<u8>,
}

fn main() {}

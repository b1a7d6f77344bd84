use reduce::Reduce;

#[derive(Reduce)]
struct Blob {
    #[reduce(skip, bytes)]
    data: Vec<u8>,
}

fn main() {}

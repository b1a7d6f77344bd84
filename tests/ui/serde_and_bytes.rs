use reduce::Reduce;

#[derive(Reduce)]
#[reduce(module = "app")]
struct Job {
    #[reduce(bytes, serde)]
    payload: Vec<u8>,
}

fn main() {}

use reduce::{Reduce, Value};

#[derive(Reduce)]
#[reduce(state)]
struct Point {
    x: f64,
    #[reduce(rest, rename = "extra")]
    other: Vec<(String, Value)>,
}

fn main() {}

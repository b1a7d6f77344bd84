use reduce::{Reduce, Value};

#[derive(Reduce)]
struct Point {
    x: f64,
    #[reduce(rest)]
    other: Vec<(String, Value)>,
}

fn main() {}

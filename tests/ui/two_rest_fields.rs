use reduce::{Reduce, Value};

#[derive(Reduce)]
#[reduce(state)]
struct Point {
    x: f64,
    #[reduce(rest)]
    other: Vec<(String, Value)>,
    #[reduce(rest)]
    more: Vec<(String, Value)>,
}

fn main() {}

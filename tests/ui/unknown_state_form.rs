use reduce::Reduce;

#[derive(Reduce)]
#[reduce(state = "list")]
struct Point {
    x: f64,
    y: f64,
}

fn main() {}

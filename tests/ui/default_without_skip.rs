use reduce::Reduce;

#[derive(Reduce)]
struct Point {
    #[reduce(default)]
    x: f64,
}

fn main() {}

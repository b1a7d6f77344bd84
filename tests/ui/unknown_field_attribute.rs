use reduce::Reduce;

#[derive(Reduce)]
struct Point {
    #[reduce(renamed = "y")]
    x: f64,
}

fn main() {}

use reduce::Reduce;

#[derive(Reduce)]
#[reduce(state)]
struct Point {
    x: f64,
    #[reduce(rest)]
    other: String,
}

fn main() {}

use reduce::Reduce;

#[derive(Reduce)]
#[reduce(state = "slots")]
struct Point {
    x: f64,
    #[reduce(skip, in_dict)]
    cache: Option<f64>,
}

fn main() {}

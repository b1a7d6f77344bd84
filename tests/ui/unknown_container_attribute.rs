use reduce::Reduce;

#[derive(Reduce)]
#[reduce(modul = "geometry")]
struct Point {
    x: f64,
}

fn main() {}

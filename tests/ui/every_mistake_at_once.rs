use reduce::Reduce;

#[derive(Reduce)]
#[reduce(modul = "geometry", python_enum)]
struct Point {
    #[reduce(default)]
    x: f64,
    #[reduce(colour)]
    y: f64,
}

fn main() {}

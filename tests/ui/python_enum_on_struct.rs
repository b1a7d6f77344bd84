use reduce::Reduce;

#[derive(Reduce)]
#[reduce(python_enum)]
struct Color {
    value: u8,
}

fn main() {}

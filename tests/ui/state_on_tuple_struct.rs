use reduce::Reduce;

#[derive(Reduce)]
#[reduce(state)]
struct Pair(i64, i64);

fn main() {}

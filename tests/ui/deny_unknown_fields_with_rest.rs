use std::collections::BTreeMap;

use reduce::{Reduce, Value};

#[derive(Reduce)]
#[reduce(state, deny_unknown_fields)]
struct Account {
    owner: String,
    #[reduce(rest)]
    other: BTreeMap<String, Value>,
}

fn main() {}

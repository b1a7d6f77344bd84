//! Rules across attributes: each broken rule is an error at the tokens the
//! user wrote, saying how to fix it.

use crate::ast::{Body, Field, Input, Shape, Style};
use crate::attr::{Container, Errors, StateForm};

pub fn check(input: &Input<'_>, errors: &mut Errors) {
    let c = &input.attrs;
    if let Some(name) = &c.name {
        if name.value.is_empty() || name.value.split('.').any(|p| p.is_empty()) {
            errors.at(
                name.span,
                "`name` must be a Python qualified name such as \"Point\" or \"Outer.Inner\"",
            );
        }
    }
    if let Some(module) = &c.module {
        if module.value.is_empty() || module.value.contains("::") {
            errors.at(
                module.span,
                "`module` must be a dotted Python module path such as \"geometry.shapes\"",
            );
        }
    }
    match &input.body {
        Body::Struct(shape) => {
            if let Some(span) = c.python_enum {
                errors.at(
                    span,
                    "`python_enum` applies to enums only: remove it, or make this type an enum",
                );
            }
            if let Some(span) = c.flat_variants {
                errors.at(span, "`flat_variants` applies to enums only: remove it");
            }
            if let Some(state) = &c.state {
                if shape.style == Style::Tuple {
                    errors.at(
                        state.span,
                        "`state` writes fields by name in the instance __dict__, so it needs named fields: use a struct with named fields, or remove `state`",
                    );
                }
            }
            if let Some(span) = c.default {
                if c.state.is_none() {
                    errors.at(span, "container `default` applies with `state` only (it fills fields missing from the state): add `state`, or remove `default`");
                }
            }
            if let Some(span) = c.deny_unknown_fields {
                if c.state.is_none() {
                    errors.at(span, "`deny_unknown_fields` applies with `state` only (it checks the attributes of the instance's state): add `state`, or remove `deny_unknown_fields`");
                }
            }
            fields(shape, c, errors);
        }
        Body::Enum(variants) => {
            if let Some(state) = &c.state {
                errors.at(state.span, "`state` is not supported on enums: remove it");
            }
            if let Some(span) = c.deny_unknown_fields {
                errors.at(
                    span,
                    "`deny_unknown_fields` applies to `state` structs only, not enums: remove it",
                );
            }
            if let Some(span) = c.default {
                errors.at(
                    span,
                    "container `default` is not supported on enums: remove it",
                );
            }
            if variants.is_empty() {
                errors.at(input.span, "#[derive(Reduce)] needs at least one variant: an empty enum has no value to write");
            }
            for v in variants {
                if c.python_enum.is_some() {
                    if v.shape.style != Style::Unit {
                        errors.at(
                            v.ident.span(),
                            "a `python_enum` variant must be a unit variant, as Python Enum members are values: remove its fields",
                        );
                    }
                    if let Some(r) = &v.attrs.rename {
                        errors.at(r.span, "`rename` does not apply to `python_enum` variants, which are written by value: use `value = ...`");
                    }
                } else if let Some(value) = &v.attrs.value {
                    errors.at(value.span, "`value` applies to `python_enum` variants only: add #[reduce(python_enum)] to the enum, or remove `value`");
                }
                fields(&v.shape, &Container::default(), errors);
            }
        }
    }
}

fn fields(shape: &Shape<'_>, c: &Container, errors: &mut Errors) {
    let state = c.state.is_some();
    let slots = c
        .state
        .as_ref()
        .is_some_and(|s| s.value == StateForm::Slots);
    let mut rest_seen = false;
    for f in &shape.fields {
        rest(f, c, &mut rest_seen, errors);
        if let Some(span) = f.attrs.in_dict {
            if !slots {
                errors.at(span, if state {
                    "every field of a `state` type is in the instance __dict__ already: remove `in_dict`, or use #[reduce(state = \"slots\")] on the type"
                } else {
                    "`in_dict` puts a field of a `state = \"slots\"` type in the instance __dict__ beside its slots: add #[reduce(state = \"slots\")] on the type, or remove `in_dict`"
                });
            }
            if f.attrs.skip.is_some() {
                errors.at(span, "a skipped field is not written, so `in_dict` has no effect: remove one of them");
            }
        }
        let a = &f.attrs;
        let how = [
            a.with.as_ref().map(|w| ("with", w.span)),
            a.registry.map(|s| ("registry", s)),
            a.bytes.map(|s| ("bytes", s)),
            a.serde.map(|s| ("serde", s)),
        ];
        let set: Vec<_> = how.iter().flatten().collect();
        if set.len() > 1 {
            errors.at(
                set[1].1,
                format!(
                    "`{}` and `{}` both say how to write this field: keep one",
                    set[0].0, set[1].0
                ),
            );
        }
        if let Some(skip) = a.skip {
            if let Some((what, _)) = set.first() {
                errors.at(skip, format!("a skipped field is not written, so `{what}` has no effect: remove one of them"));
            }
        }
        if let Some(d) = &a.default {
            if a.skip.is_none() && !state {
                errors.at(
                    d.span,
                    "`default` applies to skipped fields, or to fields of a `state` type missing from the state: add `skip`, or #[reduce(state)] on the type",
                );
            }
        }
        if let Some(r) = &a.rename {
            if r.value.is_empty() {
                errors.at(r.span, "`rename` needs a non-empty name");
            }
        }
    }
}

/// The rules of a `rest` field.
fn rest(f: &Field<'_>, c: &Container, seen: &mut bool, errors: &mut Errors) {
    let Some(span) = f.attrs.rest else {
        return;
    };
    if c.state.is_none() {
        errors.at(span, "`rest` keeps the attributes of a `state` type's instance that it has no field for: add #[reduce(state)] on the type, or remove `rest`");
    }
    if let Some(deny) = c.deny_unknown_fields {
        errors.at(deny, "a `rest` field keeps unknown attributes, so `deny_unknown_fields` never fires: remove one of them");
    }
    if std::mem::replace(seen, true) {
        errors.at(
            span,
            "only one field can be `rest` (it keeps every unknown attribute): remove this one",
        );
    }
    let a = &f.attrs;
    let others = [
        a.rename.as_ref().map(|r| ("rename", r.span)),
        a.skip.map(|s| ("skip", s)),
        a.default.as_ref().map(|d| ("default", d.span)),
        a.with.as_ref().map(|w| ("with", w.span)),
        a.registry.map(|s| ("registry", s)),
        a.bytes.map(|s| ("bytes", s)),
        a.serde.map(|s| ("serde", s)),
    ];
    for (what, at) in others.into_iter().flatten() {
        errors.at(
            at,
            format!("a `rest` field holds the other attributes by their own names, so `{what}` does not apply to it: remove `{what}`"),
        );
    }
}

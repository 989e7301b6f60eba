//! jq expressions (through the `jaq` crates) for flow conditions, field values, webhook and
//! callout bodies. An expression sees the record as `.` and as `$new`, the record before the
//! change as `$old` (null for creates), a callout's reply as `$reply` and an invocation's inputs
//! as `$input` (null where they do not apply). Filters that reach outside the expression
//! (`input`, `env`, `$ENV`, `halt`, `debug`, `stderr`, `input_filename`) are not available.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, Compiler, Ctx, Vars};
use jaq_json::Val;
use serde_json::Value as Json;

type D = data::JustLut<Val>;

/// Names a flow expression cannot use.
const DENIED: &[&str] = &[
    "input",
    "inputs",
    "env",
    "halt",
    "halt_error",
    "debug",
    "stderr",
    "input_filename",
    "input_line_number",
    "get_search_list",
    "$__loc__",
];

/// Outputs read from one run at most (a condition or value uses the first).
const MAX_OUTPUTS: usize = 1;

/// The values an expression's variables stand for.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `$new`: the record after the change.
    pub new: &'a Json,
    /// `$old`: the record before the change.
    pub old: &'a Json,
    /// `$reply`: the last callout's reply.
    pub reply: &'a Json,
    /// `$input`: an invocation's input.
    pub input: &'a Json,
}

/// A compiled expression.
pub struct Expr {
    source: String,
    filter: jaq_core::compile::Filter<jaq_core::Native<D>>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl Expr {
    /// Compiles `source`; the error says what is wrong in words.
    pub fn compile(source: &str) -> Result<Expr, String> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .filter(|d| !DENIED.contains(&d.name));
        let funs = jaq_core::funs::<D>()
            .chain(jaq_std::funs::<D>())
            .chain(jaq_json::funs::<D>())
            .filter(|f| !DENIED.contains(&f.0));
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(
                &arena,
                File {
                    code: source,
                    path: (),
                },
            )
            .map_err(|errs| {
                format!(
                    "cannot parse the jq expression {source:?}: {}",
                    describe_load(&errs)
                )
            })?;
        let filter = Compiler::default()
            .with_funs(funs)
            .with_global_vars(["$new", "$old", "$reply", "$input"])
            .compile(modules)
            .map_err(|errs| {
                let names: Vec<String> = errs
                    .into_iter()
                    .flat_map(|(_, es)| es.into_iter().map(|(name, _)| name.to_string()))
                    .collect();
                format!(
                    "cannot compile the jq expression {source:?}: undefined {}",
                    names.join(", ")
                )
            })?;
        Ok(Expr {
            source: source.to_string(),
            filter,
        })
    }

    /// The expression's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The first output for a record (`new`, or `old` when there is no new state), or null
    /// when there is none; an error names the expression and what failed.
    pub fn first(&self, new: &Json, old: &Json) -> Result<Json, String> {
        self.eval(&Scope {
            new,
            old,
            reply: &Json::Null,
            input: &Json::Null,
        })
    }

    /// The first output with every variable given; `.` is `$new`, else `$old`, else `$input`.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Json, String> {
        let input = [scope.new, scope.old, scope.input]
            .into_iter()
            .find(|v| !v.is_null())
            .unwrap_or(&Json::Null);
        let to_val = |j: &Json| -> Result<Val, String> {
            serde_json::from_value::<Val>(j.clone()).map_err(|e| e.to_string())
        };
        let vars = [
            to_val(scope.new)?,
            to_val(scope.old)?,
            to_val(scope.reply)?,
            to_val(scope.input)?,
        ];
        let ctx = Ctx::<D>::new(&self.filter.lut, Vars::new(vars));
        let mut out = self.filter.id.run((ctx, to_val(input)?));
        let mut first = Json::Null;
        for (n, r) in out.by_ref().enumerate() {
            if n >= MAX_OUTPUTS {
                break;
            }
            match r {
                Ok(v) => {
                    first = serde_json::from_str(&v.to_string()).map_err(|e| {
                        format!("the jq expression {:?} produced {v}: {e}", self.source)
                    })?;
                }
                Err(e) => {
                    return Err(format!(
                        "the jq expression {:?} failed: {}",
                        self.source,
                        describe_exn(e)
                    ))
                }
            }
        }
        Ok(first)
    }

    /// Whether the expression holds for a record: its first output is neither null nor false.
    pub fn holds(&self, new: &Json, old: &Json) -> Result<bool, String> {
        Ok(!matches!(
            self.first(new, old)?,
            Json::Null | Json::Bool(false)
        ))
    }
}

fn describe_exn(e: jaq_core::Exn<Val>) -> String {
    match e.get_err() {
        Ok(err) => err.to_string(),
        Err(_) => "the expression stopped".into(),
    }
}

fn describe_load<E: std::fmt::Debug>(errs: &E) -> String {
    let text = format!("{errs:?}");
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stage_change_is_expressible() {
        let e =
            Expr::compile(r#"$new.Status == "Activated" and $old.Status != "Activated""#).unwrap();
        let new = json!({"Status": "Activated"});
        assert!(e.holds(&new, &json!({"Status": "Draft"})).unwrap());
        assert!(!e.holds(&new, &json!({"Status": "Activated"})).unwrap());
        assert!(
            e.holds(&new, &Json::Null).unwrap(),
            "a create has no old state"
        );
        let e = Expr::compile("{id: .Id, total: (.Amount * 2)}").unwrap();
        assert_eq!(
            e.first(&json!({"Id": "x", "Amount": 2.5}), &Json::Null)
                .unwrap(),
            json!({"id": "x", "total": 5.0})
        );
    }

    #[test]
    fn bad_expressions_and_outside_access_are_refused() {
        assert!(Expr::compile("$new.Status ==").is_err());
        let err = Expr::compile("input").unwrap_err();
        assert!(err.contains("undefined"), "{err}");
        assert!(Expr::compile("env.HOME").is_err());
        assert!(Expr::compile("$ENV").is_err());
        assert!(Expr::compile("$other").is_err());
        let e = Expr::compile(".Amount + \"x\"").unwrap();
        assert!(e.first(&json!({"Amount": 1}), &Json::Null).is_err());
        // Endless output is cut at the first value.
        let e = Expr::compile("range(1000000000000)").unwrap();
        assert_eq!(e.first(&json!({}), &Json::Null).unwrap(), json!(0));
    }
}

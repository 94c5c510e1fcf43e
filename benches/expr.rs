//! Rule conditions: twinstream's compiled expression DSL
//! (`topology::expr::compile_condition` -> `Cond::eval`) against `evalexpr`.
//!
//!     cargo bench --bench expr
//!     cargo bench --bench expr -- --warm-up-time 1 --measurement-time 2   (quick)
//!
//! Per condition, one evaluation with fresh input values (rotating through 256
//! pre-drawn rows, so both outcomes occur):
//!
//! * `dsl`: write the values into the twin's slots, `Cond::eval`.
//! * `evalexpr/set+eval`: the tree is built once (`build_operator_tree`); per
//!   evaluation every variable is set in a `HashMapContext` (what a twin would
//!   do per event), then `eval_boolean_with_context`.
//! * `evalexpr/prepared`: the context is filled once; evaluation only (a lower
//!   bound for evalexpr, not reachable when values change per event).
//!
//! Before measuring, both engines are checked to agree on every row.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use evalexpr::{build_operator_tree, ContextWithMutableVariables, DefaultNumericTypes, HashMapContext, Node, Value};
use twinstream::topology::expr::{compile_condition, Cond, Env, Resolver, Unresolved};

/// Slots are indices into the condition's variable list.
struct Names<'a>(&'a [&'a str]);

impl Resolver for Names<'_> {
    type Slot = u16;
    fn resolve(&self, path: &[&str]) -> Result<u16, Unresolved> {
        let name = path.join(".");
        self.0
            .iter()
            .position(|n| *n == name)
            .map(|i| i as u16)
            .ok_or_else(|| format!("unknown name `{name}`").into())
    }
}

struct Slots<'a>(&'a [f64]);

impl Env<u16> for Slots<'_> {
    #[inline]
    fn get(&self, slot: u16) -> f64 {
        self.0[slot as usize]
    }
}

struct Case {
    name: &'static str,
    dsl: &'static str,
    evalexpr: &'static str,
    vars: &'static [&'static str],
    /// Value range per variable.
    ranges: &'static [(f64, f64)],
}

const CASES: &[Case] = &[
    Case {
        name: "and",
        dsl: "temperature > 90 and vibration < 5",
        evalexpr: "temperature > 90 && vibration < 5",
        vars: &["temperature", "vibration"],
        ranges: &[(60.0, 120.0), (0.0, 10.0)],
    },
    Case {
        name: "abs-max-or",
        dsl: "abs(a - b) > 3 or max(a, b, c) > 10",
        evalexpr: "math::abs(a - b) > 3 || max(a, b, c) > 10",
        vars: &["a", "b", "c"],
        ranges: &[(0.0, 8.0), (0.0, 8.0), (0.0, 12.0)],
    },
    Case {
        name: "window-avg",
        dsl: "w1s.vibration.avg > 7.0",
        evalexpr: "w1s.vibration.avg > 7.0",
        vars: &["w1s.vibration.avg"],
        ranges: &[(4.0, 10.0)],
    },
];

const ROWS: usize = 256;

/// Deterministic rows of input values on a 1/64 grid (splitmix64).
fn rows(ranges: &[(f64, f64)]) -> Vec<Vec<f64>> {
    let mut s: u64 = 42;
    let mut unit = move || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..ROWS)
        .map(|_| {
            ranges
                .iter()
                .map(|(lo, hi)| ((lo + (hi - lo) * unit()) * 64.0).round() / 64.0)
                .collect()
        })
        .collect()
}

#[inline]
fn set_all(ctx: &mut HashMapContext, vars: &[&str], row: &[f64]) {
    for (name, v) in vars.iter().zip(row) {
        ctx.set_value((*name).to_string(), Value::Float(*v)).expect("same type");
    }
}

fn bench_expr(c: &mut Criterion) {
    let mut g = c.benchmark_group("expr");
    g.throughput(Throughput::Elements(1));
    for case in CASES {
        let cond: Cond<u16> = compile_condition(case.dsl, &Names(case.vars)).expect("DSL compiles");
        let tree: Node<DefaultNumericTypes> = build_operator_tree(case.evalexpr).expect("evalexpr parses");
        let rows = rows(case.ranges);

        let mut ctx = HashMapContext::new();
        let mut outcomes = [0usize; 2];
        for row in &rows {
            set_all(&mut ctx, case.vars, row);
            let ours = cond.eval(&Slots(row));
            let theirs = tree.eval_boolean_with_context(&ctx).expect("boolean");
            assert_eq!(ours, theirs, "{}: {row:?}", case.name);
            outcomes[ours as usize] += 1;
        }
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{}: one outcome only", case.name);

        g.bench_function(BenchmarkId::new("dsl", case.name), |b| {
            let mut slots = vec![0.0; case.vars.len()];
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % ROWS;
                slots.copy_from_slice(&rows[i]);
                black_box(cond.eval(&Slots(black_box(&slots))))
            });
        });
        g.bench_function(BenchmarkId::new("evalexpr/set+eval", case.name), |b| {
            let mut ctx = HashMapContext::new();
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % ROWS;
                set_all(&mut ctx, case.vars, black_box(&rows[i]));
                black_box(tree.eval_boolean_with_context(&ctx).expect("boolean"))
            });
        });
        g.bench_function(BenchmarkId::new("evalexpr/prepared", case.name), |b| {
            let mut ctx = HashMapContext::new();
            set_all(&mut ctx, case.vars, &rows[0]);
            b.iter(|| black_box(tree.eval_boolean_with_context(black_box(&ctx)).expect("boolean")));
        });
    }
    g.finish();
}

criterion_group!(benches, bench_expr);
criterion_main!(benches);

//! The filter against steps computed by hand, the closed forms of the
//! presets against the general discretisation, and properties of the
//! covariance under arbitrary readings.

use ndarray::{array, Array1, Array2};
use proptest::prelude::*;

use super::*;

fn model(
    dynamics: Dynamics,
    n: usize,
    h: Array1<f64>,
    r: f64,
    x0: Option<Array1<f64>>,
    p0: Array2<f64>,
) -> FilterModel {
    FilterModel {
        version: 1,
        states: (0..n).map(|i| format!("s{i}").into()).collect(),
        dynamics,
        inputs: vec![0],
        observations: vec![ObservationDef { sensor: 0, h, r }],
        by_sensor: vec![Some(0), None],
        x0,
        p0,
        anomaly: Some(AnomalyDef::new(4, 0.01, 0)),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

fn assert_close(what: &str, got: f64, want: f64) {
    assert!(close(got, want), "{what}: got {got}, want {want}");
}

#[test]
fn a_level_follows_hand_computed_steps() {
    // P0 = 1, r = 1, q = 0.5/s, x0 = 0.
    let fm = model(
        Dynamics::Level { q: 0.5 },
        1,
        array![1.0],
        1.0,
        Some(array![0.0]),
        array![[1.0]],
    );
    let mut f = FilterState::new(&fm);
    // t = 0, z = 2: no prediction; s = 2, k = 0.5, x = 1, P = 0.5.
    assert_eq!(f.on_reading(&fm, 0, 0, 2.0, &[]), Step::Updated);
    assert_close("x1", f.x[0], 1.0);
    assert_close("P1", f.p[[0, 0]], 0.5);
    assert_close("residual1", f.observations[0].residual, 2.0);
    assert_close("s1", f.observations[0].residual_var, 2.0);
    // t = 1 s, z = 4: P- = 1, s = 2, k = 0.5, y = 3, x = 2.5, P = 0.5.
    assert_eq!(f.on_reading(&fm, 0, 1000, 4.0, &[]), Step::Updated);
    assert_close("x2", f.x[0], 2.5);
    assert_close("P2", f.p[[0, 0]], 0.5);
    assert_close("residual2", f.observations[0].residual, 3.0);
    // The first reading (one state) is the start: only the second is tested;
    // the window (4) is not full, so there is no sum yet.
    // The ring holds the normalised innovation, y / sqrt(s).
    assert_eq!((f.nis_filled, f.nis[0]), (1, (3.0 / 2f64.sqrt(), 0)));
    assert!(f.nis_sum().is_nan());
}

#[test]
fn a_level_with_a_rate_follows_hand_computed_steps() {
    // P0 = I, r = 1, q = 0, x0 = [0, 0].
    let fm = model(
        Dynamics::LevelRate { q: 0.0 },
        2,
        array![1.0, 0.0],
        1.0,
        Some(array![0.0, 0.0]),
        Array2::eye(2),
    );
    let mut f = FilterState::new(&fm);
    // z = 1: k = [0.5, 0], x = [0.5, 0], P = [[0.5, 0], [0, 1]].
    f.on_reading(&fm, 0, 0, 1.0, &[]);
    assert_close("x0", f.x[0], 0.5);
    assert_close("P00", f.p[[0, 0]], 0.5);
    assert_close("P11", f.p[[1, 1]], 1.0);
    // 1 s later, z = 3: P- = [[1.5, 1], [1, 1]], s = 2.5, k = [0.6, 0.4],
    // y = 2.5, x = [2, 1], P = P- - k s k' = [[0.6, 0.4], [0.4, 0.6]].
    f.on_reading(&fm, 0, 1000, 3.0, &[]);
    assert_close("level", f.x[0], 2.0);
    assert_close("rate", f.x[1], 1.0);
    assert_close("s", f.observations[0].residual_var, 2.5);
    for (i, j, want) in [(0, 0, 0.6), (0, 1, 0.4), (1, 0, 0.4), (1, 1, 0.6)] {
        assert_close(&format!("P{i}{j}"), f.p[[i, j]], want);
    }
    let (est, std) = f.state(1);
    assert_close("rate estimate", est, 1.0);
    assert_close("rate std", std, 0.6f64.sqrt());
}

#[test]
fn a_lag_moves_towards_the_commanded_value_and_holds_without_one() {
    let fm = model(
        Dynamics::Lag {
            tau_s: 10.0,
            gain: 2.0,
            q: 0.0,
        },
        1,
        array![1.0],
        1e-12,
        Some(array![0.0]),
        array![[1e-12]],
    );
    let mut f = FilterState::new(&fm);
    f.on_reading(&fm, 0, 0, 0.0, &[f64::NAN]);
    // Nothing commanded: holds.
    f.predict(&fm, 5_000, &[f64::NAN]);
    assert_close("held", f.x[0], 0.0);
    // u = 3, gain 2: after one tau the value is (1 - 1/e) of the way to 6.
    f.predict(&fm, 10_000, &[3.0]);
    assert_close("one tau", f.x[0], 6.0 * (1.0 - (-1.0f64).exp()));
}

#[test]
fn a_reading_older_than_the_estimate_is_counted_not_taken_in() {
    let fm = model(Dynamics::Level { q: 0.1 }, 1, array![1.0], 1.0, None, array![[1e6]]);
    let mut f = FilterState::new(&fm);
    f.on_reading(&fm, 0, 2000, 5.0, &[]);
    let before = f.clone();
    assert_eq!(f.on_reading(&fm, 0, 1000, 50.0, &[]), Step::OutOfOrder);
    assert_eq!(f.out_of_order, 1);
    assert_eq!((f.x.clone(), f.p.clone(), f.t), (before.x, before.p, before.t));
    // Same event time: an update without a step.
    assert_eq!(f.on_reading(&fm, 0, 2000, 5.0, &[]), Step::Updated);
    // Sensors the model does not observe, and values that are not numbers.
    assert_eq!(f.on_reading(&fm, 1, 3000, 5.0, &[]), Step::Ignored);
    assert_eq!(f.on_reading(&fm, 0, 3000, f64::NAN, &[]), Step::Ignored);
}

#[test]
fn without_x0_the_first_reading_sets_the_estimate() {
    let fm = model(Dynamics::Level { q: 0.1 }, 1, array![1.0], 0.04, None, array![[0.04e6]]);
    let mut f = FilterState::new(&fm);
    f.on_reading(&fm, 0, 0, 17.0, &[]);
    assert_close("x", f.x[0], 17.0);
    assert!(
        f.p[[0, 0]] <= 0.04,
        "P after the first reading is at most r: {}",
        f.p[[0, 0]]
    );
    assert!(f.nis_sum().is_nan(), "the start is not tested");
}

#[test]
fn the_matrix_exponential_matches_closed_forms() {
    let e = expm(&array![[0.0, 2.5], [0.0, 0.0]]);
    assert_eq!(e, array![[1.0, 2.5], [0.0, 1.0]]);
    let e = expm(&array![[-3.0, 0.0], [0.0, 40.0]]);
    assert_close("exp(-3)", e[[0, 0]], (-3.0f64).exp());
    assert_close("exp(40)", e[[1, 1]], 40.0f64.exp());
    // A rotation: exp([[0, -w], [w, 0]] t).
    let w: f64 = 7.0;
    let e = expm(&array![[0.0, -w], [w, 0.0]]);
    assert_close("cos", e[[0, 0]], w.cos());
    assert_close("sin", e[[1, 0]], w.sin());
}

/// The presets' closed forms equal the general continuous discretisation
/// (Van Loan) of the same matrices.
#[test]
fn the_presets_equal_their_matrix_form() {
    let cases: Vec<(Dynamics, Dynamics, Array1<f64>, Array2<f64>)> = vec![
        (
            Dynamics::Level { q: 0.3 },
            Dynamics::Continuous {
                a: array![[0.0]],
                b: Array2::zeros((1, 1)),
                q: array![[0.3]],
            },
            array![1.0],
            array![[2.0]],
        ),
        (
            Dynamics::LevelRate { q: 0.7 },
            Dynamics::Continuous {
                a: array![[0.0, 1.0], [0.0, 0.0]],
                b: Array2::zeros((2, 1)),
                q: array![[0.0, 0.0], [0.0, 0.7]],
            },
            array![1.0, 0.0],
            array![[2.0, 0.3], [0.3, 1.0]],
        ),
        (
            Dynamics::Lag {
                tau_s: 4.0,
                gain: 1.5,
                q: 0.2,
            },
            Dynamics::Continuous {
                a: array![[-0.25]],
                b: array![[1.5 / 4.0]],
                q: array![[0.2]],
            },
            array![1.0],
            array![[2.0]],
        ),
    ];
    for (preset, general, h, p0) in cases {
        let n = h.len();
        let fa = model(preset, n, h.clone(), 0.5, Some(Array1::ones(n)), p0.clone());
        let fb = model(general, n, h, 0.5, Some(Array1::ones(n)), p0);
        let (mut a, mut b) = (FilterState::new(&fa), FilterState::new(&fb));
        for (i, (ts, z)) in [(0, 1.0), (1500, 2.0), (1700, 2.5), (6000, 1.0)]
            .into_iter()
            .enumerate()
        {
            a.on_reading(&fa, 0, ts, z, &[3.0]);
            b.on_reading(&fb, 0, ts, z, &[3.0]);
            for k in 0..n {
                assert_close(&format!("{:?} step {i} x{k}", fa.dynamics), a.x[k], b.x[k]);
                for j in 0..n {
                    assert_close(&format!("{:?} step {i} P{k}{j}", fa.dynamics), a.p[[k, j]], b.p[[k, j]]);
                }
            }
        }
    }
}

#[test]
fn the_anomaly_bounds_are_the_chi_square_and_normal_quantiles() {
    // Two tests, each at half the rate. chi2(1) at 1% each: the 0.5% and
    // 99.5% quantiles; the normal's two-sided 1% bound, 2.5758.
    let a = AnomalyDef::new(1, 0.02, 0);
    assert!((a.low - 3.927e-5).abs() < 1e-7, "{}", a.low);
    assert!((a.high - 7.879).abs() < 1e-3, "{}", a.high);
    assert!((a.bias_high - 2.5758).abs() < 1e-4, "{}", a.bias_high);
    // chi2(10) at 0.1% each: the 0.05% and 99.95% quantiles, 1.265 and 31.42.
    let a = AnomalyDef::new(10, 0.002, 0);
    assert!((a.low - 1.265).abs() < 1e-3, "{}", a.low);
    assert!((a.high - 31.420).abs() < 1e-3, "{}", a.high);
    assert!((a.bias_high - 3.2905).abs() < 1e-4, "{}", a.bias_high);
    // Hysteresis: the clear bounds are inside the raise bounds.
    assert!(a.low < a.clear_low && a.clear_high < a.high && a.clear_bias < a.bias_high);
}

fn symmetric_psd(p: &Array2<f64>) -> Result<(), String> {
    let n = p.nrows();
    for i in 0..n {
        for j in 0..n {
            if p[[i, j]] != p[[j, i]] {
                return Err(format!("not symmetric at {i},{j}: {p}"));
            }
        }
    }
    // Cholesky of P + eps I: every pivot positive.
    let scale = (0..n).map(|i| p[[i, i]].abs()).fold(1e-300, f64::max);
    let mut l = Array2::<f64>::zeros((n, n));
    for j in 0..n {
        let mut d = p[[j, j]] + 1e-9 * scale;
        for k in 0..j {
            d -= l[[j, k]] * l[[j, k]];
        }
        if d <= 0.0 {
            return Err(format!("not positive semi-definite (pivot {j} = {d}): {p}"));
        }
        l[[j, j]] = d.sqrt();
        for i in (j + 1)..n {
            let mut v = p[[i, j]];
            for k in 0..j {
                v -= l[[i, k]] * l[[j, k]];
            }
            l[[i, j]] = v / l[[j, j]];
        }
    }
    Ok(())
}

proptest! {
    /// Whatever the readings (values far apart, steps from 0 to an hour,
    /// tiny and huge noise), the covariance stays symmetric and positive
    /// semi-definite.
    #[test]
    fn the_covariance_stays_symmetric_and_positive(
        r in prop_oneof![Just(1e-8), Just(1.0), Just(1e6)],
        q in prop_oneof![Just(0.0), Just(1e-6), Just(10.0)],
        rot in 0.0f64..3.0,
        damp in 0.0f64..2.0,
        readings in proptest::collection::vec((0i64..3_600_000, -1e6f64..1e6), 1..40),
    ) {
        let dynamics = [
            Dynamics::LevelRate { q },
            Dynamics::Continuous {
                a: array![[-damp, rot], [-rot, -damp]],
                b: array![[1.0], [0.0]],
                q: array![[q, 0.0], [0.0, q / 2.0]],
            },
            Dynamics::Discrete {
                f: array![[1.0, 0.1], [-rot / 10.0, 1.0 - damp / 10.0]],
                b: array![[0.0], [1.0]],
                q: array![[q, q / 4.0], [q / 4.0, q]],
            },
        ];
        for d in dynamics {
            let fm = model(d, 2, array![1.0, 0.5], r, None, Array2::eye(2) * (1e6 * r));
            let mut f = FilterState::new(&fm);
            let mut ts = 0;
            for &(dt, z) in &readings {
                ts += dt;
                f.on_reading(&fm, 0, ts, z, &[1.0]);
                symmetric_psd(&f.p).map_err(TestCaseError::fail)?;
                prop_assert!(f.x.iter().all(|v| v.is_finite()), "estimate not finite: {}", f.x);
            }
        }
    }
}

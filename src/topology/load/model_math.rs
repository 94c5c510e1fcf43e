//! The numeric checks of a model's matrices (symmetry, definiteness) and its
//! version: a hash of the resolved declaration that is stable across builds.

use crate::topology::spec::*;

/// `Err((i, j))`: the first entry below the diagonal that differs from its
/// mirror by more than `1e-9` of the matrix's largest entry.
pub(super) fn symmetric(m: &[Vec<f64>]) -> Result<(), (usize, usize)> {
    let scale = m.iter().flatten().fold(0.0_f64, |a, x| a.max(x.abs()));
    for (i, row) in m.iter().enumerate() {
        for (j, x) in row.iter().enumerate().take(i) {
            if (x - m[j][i]).abs() > 1e-9 * scale {
                return Err((i, j));
            }
        }
    }
    Ok(())
}

/// Whether a symmetric matrix is positive semi-definite: an `L D L^T`
/// elimination whose pivots are all `>= -tol` (`tol` = `1e-12` of the trace);
/// a pivot within `tol` of zero must have a column of zeros below it (within
/// `sqrt(tol * trace)`), as a semi-definite matrix has, and is skipped.
pub(super) fn semidefinite(m: &[Vec<f64>]) -> bool {
    ldl(m, false)
}

/// Whether a symmetric matrix is positive definite: the same elimination
/// (Cholesky without the square roots) with every pivot above `tol`.
pub(super) fn positive_definite(m: &[Vec<f64>]) -> bool {
    ldl(m, true)
}

fn ldl(m: &[Vec<f64>], strict: bool) -> bool {
    let n = m.len();
    let trace: f64 = (0..n).map(|i| m[i][i].abs()).sum();
    let tol = 1e-12 * trace;
    let mut a = m.to_vec();
    for k in 0..n {
        let d = a[k][k];
        if strict && d <= tol {
            return false;
        }
        if d < -tol {
            return false;
        }
        let (top, below) = a.split_at_mut(k + 1);
        if d <= tol {
            if below.iter().any(|r| r[k].abs() > (tol * trace).sqrt()) {
                return false;
            }
            continue;
        }
        let pivot = &top[k];
        for row in below {
            let l = row[k] / d;
            for (x, p) in row.iter_mut().zip(pivot).skip(k + 1) {
                *x -= l * p;
            }
        }
    }
    true
}

/// FNV-1a, 64 bits: written out so a model's version is the same with every
/// Rust version and platform (`DefaultHasher` promises neither).
struct Fnv(u64);

impl Fnv {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// By its bits; `-0.0` as `0.0`.
    fn f64(&mut self, v: f64) {
        self.u64(if v == 0.0 { 0 } else { v.to_bits() });
    }

    /// Length-prefixed, so `["ab", "c"]` and `["a", "bc"]` differ.
    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.bytes(s.as_bytes());
    }

    fn row(&mut self, r: &[f64]) {
        self.u64(r.len() as u64);
        r.iter().for_each(|x| self.f64(*x));
    }

    fn matrix(&mut self, m: &[Vec<f64>]) {
        self.u64(m.len() as u64);
        m.iter().for_each(|r| self.row(r));
    }
}

/// A model's version: FNV-1a over a canonical encoding of its resolved
/// declaration: the preset (if any: the filter steps a preset by its closed
/// form, so a preset and its matrices written out never share a version),
/// states, transition, `A`, `B`, inputs by command name, observations by
/// sensor name with `h` and `r`, `Q`, `x0`, `P0` and the anomaly parameters.
/// Positions, comments and the order of fields in the YAML do not count.
pub(super) fn version(m: &ModelSpec, sensors: &[SensorSpec], commands: &[CommandDef]) -> u64 {
    let mut h = Fnv(Fnv::OFFSET);
    h.str("twinstream.model/1");
    h.str(m.preset.map_or("", Preset::name));
    h.u64(m.states.len() as u64);
    m.states.iter().for_each(|s| h.str(s));
    h.u64(match m.transition {
        ModelTransition::Continuous => 0,
        ModelTransition::Discrete => 1,
    });
    h.matrix(&m.a);
    h.matrix(&m.b);
    h.u64(m.inputs.len() as u64);
    m.inputs.iter().for_each(|&c| h.str(&commands[c].name));
    h.u64(m.observe.len() as u64);
    for o in &m.observe {
        h.str(&sensors[o.sensor].name);
        h.row(&o.h);
        h.f64(o.r);
    }
    h.matrix(&m.q);
    match &m.x0 {
        Some(x) => {
            h.u64(1);
            h.row(x);
        }
        None => h.u64(0),
    }
    h.matrix(&m.p0);
    match &m.anomaly {
        Some(a) => {
            h.u64(1);
            h.f64(a.false_alarm);
            h.u64(u64::from(a.window));
            h.u64(a.hold.as_nanos() as u64);
            h.str(a.severity.name());
        }
        None => h.u64(0),
    }
    h.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_1a_matches_the_published_test_vectors() {
        let of = |s: &str| {
            let mut h = Fnv(Fnv::OFFSET);
            h.bytes(s.as_bytes());
            h.0
        };
        assert_eq!(of(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(of("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(of("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn definiteness() {
        let m = |rows: &[&[f64]]| rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>();
        // Semi-definite with a zero pivot first (level_rate's Q).
        assert!(semidefinite(&m(&[&[0.0, 0.0], &[0.0, 0.01]])));
        assert!(!positive_definite(&m(&[&[0.0, 0.0], &[0.0, 0.01]])));
        assert!(semidefinite(&m(&[&[0.0, 0.0], &[0.0, 0.0]])));
        // A zero variance with a covariance: indefinite.
        assert!(!semidefinite(&m(&[&[0.0, 1.0], &[1.0, 1.0]])));
        assert!(!semidefinite(&m(&[&[1.0, 2.0], &[2.0, 1.0]])));
        assert!(!semidefinite(&m(&[&[-1.0]])));
        // Rank one: [1, 1] [1, 1]^T, semi-definite only.
        assert!(semidefinite(&m(&[&[1.0, 1.0], &[1.0, 1.0]])));
        assert!(!positive_definite(&m(&[&[1.0, 1.0], &[1.0, 1.0]])));
        assert!(positive_definite(&m(&[&[2.0, 1.0], &[1.0, 2.0]])));
        assert!(positive_definite(&m(&[
            &[4.0, 2.0, 0.0],
            &[2.0, 5.0, 1.0],
            &[0.0, 1.0, 3.0]
        ])));
        assert!(!positive_definite(&m(&[&[1.0, 0.0], &[0.0, 0.0]])));
    }

    #[test]
    fn symmetry_is_relative_to_the_largest_entry() {
        assert_eq!(symmetric(&[vec![1e6, 1.0], vec![1.0 + 1e-6, 1e6]]), Ok(()));
        assert_eq!(symmetric(&[vec![1.0, 0.5], vec![0.0, 1.0]]), Err((1, 0)));
    }
}

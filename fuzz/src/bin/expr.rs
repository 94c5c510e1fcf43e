//! AFL++ target `expr`: see `twinstream::fuzzing::expr`.
fn main() {
    afl::fuzz!(|data: &[u8]| twinstream::fuzzing::expr(data));
}

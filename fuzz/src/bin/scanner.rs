//! AFL++ target `scanner`: see `twinstream::fuzzing::scanner`.
fn main() {
    afl::fuzz!(|data: &[u8]| twinstream::fuzzing::scanner(data));
}

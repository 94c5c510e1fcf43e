//! AFL++ target `stored`: see `twinstream::fuzzing::stored`.
fn main() {
    afl::fuzz!(|data: &[u8]| twinstream::fuzzing::stored(data));
}

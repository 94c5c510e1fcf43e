//! AFL++ target `decode`: see `twinstream::fuzzing::decode`.
fn main() {
    afl::fuzz!(|data: &[u8]| twinstream::fuzzing::decode(data));
}

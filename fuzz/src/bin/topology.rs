//! AFL++ target `topology`: see `twinstream::fuzzing::topology`.
fn main() {
    afl::fuzz!(|data: &[u8]| twinstream::fuzzing::topology(data));
}

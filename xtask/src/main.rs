//! Build orchestration for KCore/KServ.
fn main() {}

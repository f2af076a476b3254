//! `evolution bench` (filled in with the metrics layer).

use crate::args::BenchArgs;
use crate::failure::Failure;

pub(crate) async fn run(_args: BenchArgs) -> Result<(), Failure> {
    Err(Failure::Other("bench is not available yet".into()))
}

//! The emulator, set up with the keys the tests use.

use evolution_emulator::{Emulator, EmulatorBuilder};

/// The key the tests call with.
pub const KEY: &str = "client-key";
/// [`KEY`]'s secret, which no log, error or `Debug` output may show.
pub const SECRET: &str = "client-secret-never-printed";
/// A second key, for backup credentials and rotations.
pub const BACKUP: &str = "backup-key";
/// [`BACKUP`]'s secret.
pub const BACKUP_SECRET: &str = "backup-secret-never-printed";

/// An emulator builder that knows [`KEY`], for tests that add latencies, faults or a TTL.
pub fn emulator_builder() -> EmulatorBuilder {
    Emulator::builder().key(KEY, SECRET)
}

/// A started emulator that knows [`KEY`].
pub async fn emulator() -> Emulator {
    emulator_builder().start().await.expect("emulator starts")
}

/// A started emulator that knows [`KEY`] and [`BACKUP`].
pub async fn two_keys() -> Emulator {
    emulator_builder()
        .key(BACKUP, BACKUP_SECRET)
        .start()
        .await
        .expect("emulator starts")
}

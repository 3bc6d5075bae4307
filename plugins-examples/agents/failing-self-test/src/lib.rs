//! An example agent that always fails its self-test: a device that tries it must revert to its
//! previous agent by itself. Used to show and test automatic rollback.

wit_bindgen::generate!({ world: "agent", path: "../../../wit/agent" });

use hotswap::agent::log::{self, Level};

struct Broken;

impl Guest for Broken {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn step() -> Result<(), String> {
        Err("this build is broken".to_string())
    }

    fn self_test() -> Result<(), String> {
        log::log(Level::Error, "self-test: calibration table missing");
        Err("calibration table missing".to_string())
    }
}

export!(Broken);

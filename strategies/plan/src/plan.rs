//! Plans, mirroring `types.plan` in `wit/plugin`, and the rules every plan keeps.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What the devices of a wave are asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Download, write the inactive slot, switch, trial and confirm.
    Install,
    /// Download and write the inactive slot only.
    Stage,
    /// Switch to the agent staged earlier, trial and confirm.
    Activate,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Install => "install",
            Mode::Stage => "stage",
            Mode::Activate => "activate",
        })
    }
}

/// The condition a wave must meet before the next one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    pub soak_seconds: u32,
    pub min_success_percent: u8,
    pub failure_budget: u32,
    pub min_sample: u32,
}

/// One step of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    pub name: String,
    /// Indices into the fleet the plan was made from.
    pub devices: Vec<u32>,
    pub mode: Mode,
    pub gate: Gate,
    pub max_in_flight: Option<u32>,
}

/// An ordered list of waves.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Plan {
    pub waves: Vec<Wave>,
}

/// A way in which a plan breaks the rules every plan must keep, whoever made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanViolation {
    TooManyWaves {
        waves: usize,
        limit: usize,
    },
    EmptyWave {
        wave: usize,
    },
    UnknownDevice {
        wave: usize,
        index: u32,
        devices: usize,
    },
    DeviceInTwoWaves {
        index: u32,
        first: usize,
        second: usize,
    },
    ActivateWithoutStage {
        wave: usize,
        index: u32,
    },
    NameTooLong {
        wave: usize,
        len: usize,
        limit: usize,
    },
    BadGate {
        wave: usize,
        min_success_percent: u8,
    },
    ZeroInFlight {
        wave: usize,
    },
}

impl fmt::Display for PlanViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanViolation::TooManyWaves { waves, limit } => {
                write!(f, "plan has {waves} waves, the limit is {limit}")
            }
            PlanViolation::EmptyWave { wave } => write!(f, "wave {wave} has no devices"),
            PlanViolation::UnknownDevice {
                wave,
                index,
                devices,
            } => write!(
                f,
                "wave {wave} names device index {index}, but only {devices} devices were given"
            ),
            PlanViolation::DeviceInTwoWaves {
                index,
                first,
                second,
            } => {
                write!(
                    f,
                    "device index {index} is in wave {first} and again in wave {second}"
                )
            }
            PlanViolation::ActivateWithoutStage { wave, index } => write!(
                f,
                "wave {wave} activates device index {index}, which no earlier wave staged"
            ),
            PlanViolation::NameTooLong { wave, len, limit } => {
                write!(
                    f,
                    "wave {wave} has a name of {len} bytes, the limit is {limit}"
                )
            }
            PlanViolation::BadGate {
                wave,
                min_success_percent,
            } => write!(
                f,
                "wave {wave} asks for {min_success_percent}% minimum success, expected 0 to 100"
            ),
            PlanViolation::ZeroInFlight { wave } => {
                write!(
                    f,
                    "wave {wave} allows 0 devices in flight, so it could never finish"
                )
            }
        }
    }
}

impl Plan {
    /// The most waves a plan may have.
    pub const MAX_WAVES: usize = 10_000;
    /// The longest wave name, in bytes.
    pub const MAX_NAME_LEN: usize = 200;

    /// Checks the rules every plan keeps: at most [`Plan::MAX_WAVES`] waves, no empty wave, every
    /// index names one of the `devices` given, sane gates, and each device updated at most once:
    /// either in one `install` wave, or in one `stage` wave and later in one `activate` wave.
    pub fn check(&self, devices: usize) -> Result<(), PlanViolation> {
        if self.waves.len() > Self::MAX_WAVES {
            return Err(PlanViolation::TooManyWaves {
                waves: self.waves.len(),
                limit: Self::MAX_WAVES,
            });
        }
        // Per device: the wave that last named it and in which mode. A Vec beats a map at fleet sizes.
        let mut seen: Vec<Option<(usize, Mode)>> = vec![None; devices];
        for (w, wave) in self.waves.iter().enumerate() {
            if wave.devices.is_empty() {
                return Err(PlanViolation::EmptyWave { wave: w });
            }
            if wave.name.len() > Self::MAX_NAME_LEN {
                return Err(PlanViolation::NameTooLong {
                    wave: w,
                    len: wave.name.len(),
                    limit: Self::MAX_NAME_LEN,
                });
            }
            if wave.gate.min_success_percent > 100 {
                return Err(PlanViolation::BadGate {
                    wave: w,
                    min_success_percent: wave.gate.min_success_percent,
                });
            }
            if wave.max_in_flight == Some(0) {
                return Err(PlanViolation::ZeroInFlight { wave: w });
            }
            for &index in &wave.devices {
                let Some(slot) = seen.get_mut(index as usize) else {
                    return Err(PlanViolation::UnknownDevice {
                        wave: w,
                        index,
                        devices,
                    });
                };
                match (*slot, wave.mode) {
                    (None, Mode::Install | Mode::Stage)
                    | (Some((_, Mode::Stage)), Mode::Activate) => {}
                    (None, Mode::Activate) => {
                        return Err(PlanViolation::ActivateWithoutStage { wave: w, index });
                    }
                    (Some((first, _)), _) => {
                        return Err(PlanViolation::DeviceInTwoWaves {
                            index,
                            first,
                            second: w,
                        });
                    }
                }
                *slot = Some((w, wave.mode));
            }
        }
        Ok(())
    }

    /// For each of `devices` device indices, how many times the plan updates it: 1 for a device in
    /// an `install` wave or in a `stage` and an `activate` wave, 0 for a device left out.
    pub fn updates_per_device(&self, devices: usize) -> Vec<u32> {
        let mut count = vec![0; devices];
        for wave in self.waves.iter().filter(|w| w.mode != Mode::Stage) {
            for &i in &wave.devices {
                count[i as usize] += 1;
            }
        }
        count
    }

    /// How many devices the plan names.
    pub fn device_count(&self) -> usize {
        self.waves.iter().map(|w| w.devices.len()).sum()
    }
}

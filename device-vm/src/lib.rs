//! The device runtime. Filled by the device VM work; empty until then.

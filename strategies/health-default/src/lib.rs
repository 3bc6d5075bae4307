//! The default health policy as a component; the judgement itself is `hotswap_plan::health`.

use hotswap_plugin_sdk::health_policy::{Description, Guest, HealthSample, Verdict, WaveStats};

struct DefaultPolicy;

impl Guest for DefaultPolicy {
    fn describe() -> Description {
        Description {
            name: "default".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            summary: "Rolls back when a wave's failure rate crosses a threshold once enough devices finished; \
                      waits out the soak time; pauses a wave that ends short of its minimum success."
                .to_string(),
            params_schema: hotswap_plan::health::SCHEMA.to_string(),
        }
    }

    fn evaluate(
        params: String,
        stats: WaveStats,
        samples: Vec<HealthSample>,
    ) -> Result<Verdict, String> {
        hotswap_plan::health::evaluate(&params, &stats.into(), &samples)
            .map(Into::into)
            .map_err(Into::into)
    }
}

hotswap_plugin_sdk::health_policy::export_health_policy!(DefaultPolicy);

//! The sandbox: one wasmtime engine with a pooling allocator, fuel and epoch interruption, a
//! linker that offers plugins nothing but `hotswap:plugin/log`, and the checks an upload passes.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use hotswap_protocol::PluginKind;

use super::bindings::{Level, health_policy, strategy};
use super::cache::{ComponentCache, ContentHash, content_hash};
use super::limits::{EPOCH_TICK, Limiter, Limits, MemoryCapExceeded};
use super::{Description, HealthPolicyPlugin, PluginError, StrategyPlugin};

/// The only import with functions a plugin may have.
pub const LOG_IMPORT: &str = "hotswap:plugin/log@0.1.0";

/// Every import a plugin may have: the log, and the interfaces that only define types.
pub const ALLOWED_IMPORTS: [&str; 3] = [
    LOG_IMPORT,
    "hotswap:plugin/types@0.1.0",
    "hotswap:plugin/health-types@0.1.0",
];

/// The export that tells a kind apart.
fn entry_point(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Strategy => "plan",
        PluginKind::HealthPolicy => "evaluate",
    }
}

/// A validated plugin of either kind.
#[derive(Clone)]
pub enum Plugin {
    Strategy(StrategyPlugin),
    HealthPolicy(HealthPolicyPlugin),
}

impl Plugin {
    pub fn kind(&self) -> PluginKind {
        match self {
            Plugin::Strategy(_) => PluginKind::Strategy,
            Plugin::HealthPolicy(_) => PluginKind::HealthPolicy,
        }
    }

    pub fn description(&self) -> &Description {
        match self {
            Plugin::Strategy(p) => p.description(),
            Plugin::HealthPolicy(p) => p.description(),
        }
    }

    /// The SHA-256 of the component's bytes, hex-encoded.
    pub fn content_hash(&self) -> String {
        match self {
            Plugin::Strategy(p) => p.content_hash(),
            Plugin::HealthPolicy(p) => p.content_hash(),
        }
    }
}

/// What loading validated, by kind.
#[derive(Clone)]
enum Loaded {
    Strategy(Arc<super::strategy::Loaded>),
    HealthPolicy(Arc<super::health::Loaded>),
}

/// How to build a [`PluginRuntime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// What every plugin runs under unless it asked for its own at upload.
    pub limits: Limits,
    /// The most a plugin may ask for (a server's `[plugin-ceilings]`); the engine and its
    /// instance pool are sized by these. None: the same as `limits`.
    pub ceilings: Option<Limits>,
    /// Where compiled plugins are kept between runs; none keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// The file of the key that proves cache entries this host's ([`CACHE_KEY_FILE`]): kept
    /// apart from the directory it protects. None: `CACHE_KEY_FILE` beside `cache_dir` (in its
    /// parent directory).
    ///
    /// [`CACHE_KEY_FILE`]: crate::CACHE_KEY_FILE
    pub cache_key_file: Option<PathBuf>,
}

/// Runs strategy and health-policy plugins in a sandbox. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct PluginRuntime {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub engine: Engine,
    pub linker: Linker<PluginState>,
    pub limits: Limits,
    pub ceilings: Limits,
    cache: ComponentCache,
    /// Plugins validated so far, without a reference back to the runtime.
    loaded: Mutex<HashMap<ContentHash, Loaded>>,
    ticker: Arc<AtomicBool>,
    /// Log lines dropped over the per-call limit, by every plugin of this runtime.
    log_dropped: Arc<AtomicU64>,
    /// Each plugin's log lines across its calls ([`LOG_LINES_PER_SECOND`]).
    log_rate: Arc<governor::DefaultKeyedRateLimiter<Arc<str>>>,
}

/// The log lines one plugin (by name and version) may write a second, across all its calls and
/// instances: a plugin called every tick for many deployments cannot flood the server's log
/// with its per-call allowance each time.
pub const LOG_LINES_PER_SECOND: u32 = 20;

/// The log lines one plugin may write at once before [`LOG_LINES_PER_SECOND`] holds it.
pub const LOG_LINES_BURST: u32 = 200;

impl PluginRuntime {
    /// How many components this runtime compiled (rather than found in its cache).
    pub fn compilations(&self) -> u64 {
        self.inner.cache.compilations()
    }

    /// How many log lines its plugins wrote over the per-call limit, dropped. A call's count is
    /// added when the store it ran in is armed for its next call or dropped.
    pub fn log_lines_dropped(&self) -> u64 {
        self.inner.log_dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker.store(true, Ordering::Relaxed);
    }
}

/// What a plugin's store holds: its limits and its share of the log.
pub(crate) struct PluginState {
    limiter: Limiter,
    plugin: Arc<str>,
    log_lines: u32,
    log_dropped: u32,
    log_lines_per_call: u32,
    log_line_bytes: usize,
    /// The runtime's count of dropped lines.
    log_dropped_total: Arc<AtomicU64>,
    log_rate: Arc<governor::DefaultKeyedRateLimiter<Arc<str>>>,
}

impl PluginState {
    /// Starts a new call: the log allowance is per call.
    pub fn reset_log(&mut self) {
        if self.log_dropped > 0 {
            tracing::warn!(plugin = %self.plugin, dropped = self.log_dropped, "plugin log lines over the per-call limit or the plugin's rate were dropped");
            self.log_dropped_total
                .fetch_add(u64::from(self.log_dropped), Ordering::Relaxed);
        }
        self.log_lines = 0;
        self.log_dropped = 0;
    }
}

impl Drop for PluginState {
    fn drop(&mut self) {
        self.reset_log();
    }
}

impl strategy::hotswap::plugin::log::Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        if self.log_lines >= self.log_lines_per_call
            || self.log_rate.check_key(&self.plugin).is_err()
        {
            self.log_dropped += 1;
            return;
        }
        self.log_lines += 1;
        let mut message = message;
        if message.len() > self.log_line_bytes {
            let mut cut = self.log_line_bytes;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let plugin = &*self.plugin;
        match level {
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl PluginRuntime {
    pub fn new(config: RuntimeConfig) -> Result<Self, PluginError> {
        let defaults = config.limits;
        let ceilings = config.ceilings.unwrap_or(defaults);
        if let Some((key, value, ceiling)) = defaults.first_above(&ceilings) {
            return Err(PluginError::Runtime(format!(
                "[plugin-limits] `{key}` is {value}, above its [plugin-ceilings] value {ceiling}"
            )));
        }
        // The engine and its pool take the most any plugin may ask for; each store enforces
        // its own plugin's limits.
        let limits = Limits {
            stack_bytes: defaults.stack_bytes.max(ceilings.stack_bytes),
            pool_instances: defaults.pool_instances.max(ceilings.pool_instances),
            ..ceilings
        };
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(limits.pool_instances)
            // wit-component adds small shim instances around a guest's main module.
            .max_core_instances_per_component(limits.max_core_instances)
            .total_core_instances(limits.pool_instances * limits.max_core_instances.max(8))
            .max_memories_per_component(limits.max_memories)
            .total_memories(limits.pool_instances * limits.max_memories)
            .total_tables(limits.pool_instances * 4)
            .max_memory_size(limits.memory_bytes);
        let mut wasm = Config::new();
        wasm.consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.stack_bytes)
            .wasm_component_model(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm)
            .map_err(|e| PluginError::Runtime(format!("creating the engine: {e:#}")))?;

        let mut linker = Linker::new(&engine);
        strategy::hotswap::plugin::log::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| PluginError::Runtime(format!("linking the log import: {e:#}")))?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let ticker_stop = stop.clone();
        thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| PluginError::Runtime(format!("starting the epoch clock: {e}")))?;

        Ok(PluginRuntime {
            inner: Arc::new(Inner {
                engine,
                linker,
                limits: defaults,
                ceilings: limits,
                cache: ComponentCache::new(config.cache_dir.map(|dir| {
                    let key = config.cache_key_file.unwrap_or_else(|| {
                        dir.parent()
                            .unwrap_or(&dir)
                            .join(crate::cache::CACHE_KEY_FILE)
                    });
                    (dir, key)
                })),
                loaded: Mutex::new(HashMap::new()),
                ticker: stop,
                log_dropped: Arc::default(),
                log_rate: Arc::new(governor::RateLimiter::keyed(
                    governor::Quota::per_second(
                        std::num::NonZeroU32::new(LOG_LINES_PER_SECOND).expect("not zero"),
                    )
                    .allow_burst(std::num::NonZeroU32::new(LOG_LINES_BURST).expect("not zero")),
                )),
            }),
        })
    }

    /// What plugins run under unless they asked for their own.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The most a plugin may ask for.
    pub fn ceilings(&self) -> &Limits {
        &self.inner.ceilings
    }

    /// Validates and loads a plugin of either kind: the check an upload goes through.
    pub fn load(&self, bytes: &[u8]) -> Result<Plugin, PluginError> {
        self.load_as(bytes, None, self.inner.limits)
    }

    /// [`PluginRuntime::load`] under limits of the plugin's own (at most the ceilings).
    pub fn load_with(&self, bytes: &[u8], limits: &Limits) -> Result<Plugin, PluginError> {
        self.load_as(bytes, None, self.fitted(limits)?)
    }

    /// A strategy under limits of its own.
    pub fn load_strategy_with(
        &self,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<StrategyPlugin, PluginError> {
        match self.load_as(bytes, Some(PluginKind::Strategy), self.fitted(limits)?)? {
            Plugin::Strategy(s) => Ok(s),
            Plugin::HealthPolicy(_) => unreachable!("load_as checked the kind"),
        }
    }

    /// A health policy under limits of its own.
    pub fn load_health_policy_with(
        &self,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<HealthPolicyPlugin, PluginError> {
        match self.load_as(bytes, Some(PluginKind::HealthPolicy), self.fitted(limits)?)? {
            Plugin::HealthPolicy(h) => Ok(h),
            Plugin::Strategy(_) => unreachable!("load_as checked the kind"),
        }
    }

    /// `limits` where they fit the engine; the engine-wide keys are the runtime's.
    fn fitted(&self, limits: &Limits) -> Result<Limits, PluginError> {
        let ceilings = &self.inner.ceilings;
        if let Some((key, asked, ceiling)) = limits.first_above(ceilings) {
            return Err(PluginError::AboveCeiling {
                key,
                asked,
                ceiling,
            });
        }
        Ok(Limits {
            stack_bytes: self.inner.limits.stack_bytes,
            log_line_bytes: self.inner.limits.log_line_bytes,
            pool_instances: self.inner.limits.pool_instances,
            ..*limits
        })
    }

    /// Loads a strategy; anything else is refused with the reason.
    pub fn load_strategy(&self, bytes: &[u8]) -> Result<StrategyPlugin, PluginError> {
        match self.load_as(bytes, Some(PluginKind::Strategy), self.inner.limits)? {
            Plugin::Strategy(s) => Ok(s),
            Plugin::HealthPolicy(_) => unreachable!("load_as checked the kind"),
        }
    }

    /// Loads a health policy; anything else is refused with the reason.
    pub fn load_health_policy(&self, bytes: &[u8]) -> Result<HealthPolicyPlugin, PluginError> {
        match self.load_as(bytes, Some(PluginKind::HealthPolicy), self.inner.limits)? {
            Plugin::HealthPolicy(h) => Ok(h),
            Plugin::Strategy(_) => unreachable!("load_as checked the kind"),
        }
    }

    fn load_as(
        &self,
        bytes: &[u8],
        expected: Option<PluginKind>,
        limits: Limits,
    ) -> Result<Plugin, PluginError> {
        let limit = limits.max_component_bytes;
        if bytes.len() > limit {
            return Err(PluginError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let world = expected.map_or(
            "hotswap:plugin/strategy@0.1.0 or health-policy@0.1.0",
            PluginKind::world,
        );
        if !wasmparser::Parser::is_component(bytes) {
            return Err(if wasmparser::Parser::is_core_wasm(bytes) {
                PluginError::CoreModule { world }
            } else {
                PluginError::NotWasm
            });
        }
        check_shape(bytes, &limits)?;
        let hash = content_hash(bytes);
        let cached = self
            .inner
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned();
        if let Some(loaded) = cached {
            let plugin = match loaded {
                Loaded::Strategy(l) => {
                    Plugin::Strategy(StrategyPlugin::from_loaded(self.clone(), l, limits))
                }
                Loaded::HealthPolicy(l) => {
                    Plugin::HealthPolicy(HealthPolicyPlugin::from_loaded(self.clone(), l, limits))
                }
            };
            check_kind(plugin.kind(), expected, &BTreeSet::new())?;
            return Ok(plugin);
        }
        let component = self
            .inner
            .cache
            .get_or_compile(&self.inner.engine, &hash, bytes)
            .map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        let plugin = self.link(component, hash, expected, limits)?;
        let loaded = match &plugin {
            Plugin::Strategy(s) => Loaded::Strategy(s.loaded().clone()),
            Plugin::HealthPolicy(h) => Loaded::HealthPolicy(h.loaded().clone()),
        };
        self.inner
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash, loaded);
        Ok(plugin)
    }

    fn link(
        &self,
        component: Component,
        hash: ContentHash,
        expected: Option<PluginKind>,
        limits: Limits,
    ) -> Result<Plugin, PluginError> {
        let engine = &self.inner.engine;
        // Its imports were checked before it was compiled (`check_shape`).
        let ty = component.component_type();
        let exports: BTreeSet<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let kind = match (exports.contains("plan"), exports.contains("evaluate")) {
            (true, false) => PluginKind::Strategy,
            (false, true) => PluginKind::HealthPolicy,
            _ => {
                let kind = expected.unwrap_or(PluginKind::Strategy);
                return Err(PluginError::WrongWorld {
                    world: expected.map_or(
                        "hotswap:plugin/strategy@0.1.0 or health-policy@0.1.0",
                        PluginKind::world,
                    ),
                    detail: format!(
                        "a strategy exports `describe` and `plan`, a health policy `describe` and `evaluate`; \
                         this component exports {} (looked for `{}`)",
                        list(&exports),
                        entry_point(kind)
                    ),
                });
            }
        };
        check_kind(kind, expected, &exports)?;
        if !exports.contains("describe") {
            return Err(PluginError::WrongWorld {
                world: kind.world(),
                detail: format!(
                    "missing export `describe`; the component exports {}",
                    list(&exports)
                ),
            });
        }
        let pre =
            self.inner
                .linker
                .instantiate_pre(&component)
                .map_err(|e| PluginError::WrongWorld {
                    world: kind.world(),
                    detail: format!("{e:#}"),
                })?;
        let wrong_types = |e: wasmtime::Error| PluginError::WrongWorld {
            world: kind.world(),
            detail: format!("{e:#}"),
        };
        let name: Arc<str> = Arc::from(format!("sha256:{}", &hex::encode(hash)[..12]));
        Ok(match kind {
            PluginKind::Strategy => {
                let pre = strategy::StrategyPre::new(pre).map_err(wrong_types)?;
                Plugin::Strategy(StrategyPlugin::load(self.clone(), pre, hash, name, limits)?)
            }
            PluginKind::HealthPolicy => {
                let pre = health_policy::HealthPolicyPre::new(pre).map_err(wrong_types)?;
                Plugin::HealthPolicy(HealthPolicyPlugin::load(
                    self.clone(),
                    pre,
                    hash,
                    name,
                    limits,
                )?)
            }
        })
    }

    /// A store for one call (or one warm session) of `plugin`, with fuel, deadline and memory cap.
    pub(crate) fn store(&self, plugin: &Arc<str>, limits: &Limits) -> Store<PluginState> {
        let mut store = Store::new(
            &self.inner.engine,
            PluginState {
                limiter: Limiter {
                    memory_bytes: limits.memory_bytes,
                },
                plugin: plugin.clone(),
                log_lines: 0,
                log_dropped: 0,
                log_lines_per_call: limits.log_lines_per_call,
                log_line_bytes: limits.log_line_bytes,
                log_dropped_total: self.inner.log_dropped.clone(),
                log_rate: self.inner.log_rate.clone(),
            },
        );
        store.limiter(|s| &mut s.limiter);
        self.arm(&mut store, limits);
        store
    }

    /// Refills a store's fuel and restarts its deadline before a call.
    pub(crate) fn arm(&self, store: &mut Store<PluginState>, limits: &Limits) {
        store
            .set_fuel(limits.fuel_per_call)
            .expect("fuel is enabled on the engine");
        store.set_epoch_deadline(limits.deadline_ticks());
        store.epoch_deadline_trap();
        store.data_mut().reset_log();
    }

    /// Names what stopped a call, from the error wasmtime returned.
    pub(crate) fn call_error(
        &self,
        plugin: &str,
        function: &'static str,
        err: wasmtime::Error,
        limits: &Limits,
    ) -> PluginError {
        let plugin = plugin.to_string();
        if let Some(cap) = err.downcast_ref::<MemoryCapExceeded>() {
            return PluginError::MemoryLimit {
                plugin,
                function,
                requested: cap.requested,
                limit: cap.limit,
            };
        }
        if err
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return PluginError::Busy(format!("{err:#}"));
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => PluginError::OutOfFuel {
                plugin,
                function,
                fuel: limits.fuel_per_call,
            },
            Some(Trap::Interrupt) => PluginError::Deadline {
                plugin,
                function,
                deadline_ms: limits.deadline.as_millis() as u64,
            },
            _ => PluginError::Trap {
                plugin,
                function,
                message: format!("{err:#}"),
            },
        }
    }
}

fn check_kind(
    found: PluginKind,
    expected: Option<PluginKind>,
    exports: &BTreeSet<String>,
) -> Result<(), PluginError> {
    match expected {
        Some(expected) if expected != found => Err(PluginError::WrongWorld {
            world: expected.world(),
            detail: if exports.is_empty() {
                format!(
                    "missing export `{}`: this is a {found} plugin",
                    entry_point(expected)
                )
            } else {
                format!(
                    "missing export `{}`: the component exports {}, which makes it a {found} plugin",
                    entry_point(expected),
                    list(exports)
                )
            },
        }),
        _ => Ok(()),
    }
}

fn list(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        return "nothing".to_string();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a component makes when instantiated, counted before it is compiled, so a component
/// past the pool's limits is refused naming the limit rather than failing to instantiate.
fn check_shape(bytes: &[u8], limits: &Limits) -> Result<(), PluginError> {
    let (mut instances, mut memories) = (0u32, 0u32);
    // Nested modules and components follow their section inline, up to their own `End`.
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(wasmparser::Payload::ModuleSection { .. })
            | Ok(wasmparser::Payload::ComponentSection { .. }) => depth += 1,
            Ok(wasmparser::Payload::End(_)) => depth = depth.saturating_sub(1),
            // The component's own imports: anything but the world's is refused by name
            // before a byte is compiled.
            Ok(wasmparser::Payload::ComponentImportSection(s)) if depth == 0 => {
                for import in s.into_iter().flatten() {
                    let name = import.name.name;
                    // A type the world `use`s is named as an import too; it brings nothing in.
                    if matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                        continue;
                    }
                    if !ALLOWED_IMPORTS.contains(&name) {
                        return Err(PluginError::ForbiddenImport {
                            import: name.to_string(),
                            allowed: format!(
                                "`{LOG_IMPORT}` and the type-only interfaces `types` and `health-types`"
                            ),
                        });
                    }
                }
            }
            // Only an instantiation makes an instance; a bag of exports is a name for others.
            Ok(wasmparser::Payload::InstanceSection(s)) => {
                for instance in s.into_iter().flatten() {
                    if matches!(instance, wasmparser::Instance::Instantiate { .. }) {
                        instances += 1;
                    }
                }
            }
            Ok(wasmparser::Payload::MemorySection(s)) => memories += s.count(),
            // A malformed component is the compiler's to describe.
            Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
    for (what, count, limit, key) in [
        (
            "core instances",
            instances,
            limits.max_core_instances,
            "max-core-instances",
        ),
        (
            "linear memories",
            memories,
            limits.max_memories,
            "max-memories",
        ),
    ] {
        if count > limit {
            return Err(PluginError::OverLimit {
                what,
                count: u64::from(count),
                limit: u64::from(limit),
                key,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_runtime_is_freed_with_its_last_handle_even_with_plugins_cached() {
        let runtime = PluginRuntime::new(RuntimeConfig::default()).unwrap();
        let strategy = runtime.builtin_strategy("canary").unwrap();
        // Cached: a second load is served from the cache, not compiled again.
        runtime.builtin_strategy("canary").unwrap();
        let weak = Arc::downgrade(&runtime.inner);
        drop(runtime);
        assert!(weak.upgrade().is_some(), "a plugin keeps its runtime alive");
        drop(strategy);
        assert!(
            weak.upgrade().is_none(),
            "the plugin cache keeps the runtime alive: a reference cycle"
        );
    }
}

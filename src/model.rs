//! The values that move between stages: blocks, telemetry samples, commit batches, and the sink contracts.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::{Address, B256, Bloom, Bytes, U256};
use tokio::sync::mpsc;

/// A provider's identity within one process: its place in the configured fleet. Every stage
/// names providers by this id; the store maps it to its `providers.id` row in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ProviderId(pub u16);

impl ProviderId {
    /// The id as a position (the fleet's slots are in configuration order).
    pub fn position(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A block that passed validation: number as requested, well-formed fields, consistent transactions.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    pub timestamp: u64,
    pub miner: Address,
    pub gas_used: u64,
    pub gas_limit: u64,
    pub base_fee_per_gas: Option<U256>,
    pub state_root: B256,
    pub transactions_root: B256,
    pub receipts_root: B256,
    pub size: Option<u64>,
    /// Number of transactions the provider said the block has (always the length of the list).
    pub tx_count: u32,
    /// `Some(true)` when keccak(RLP(header)) equals `hash`; `None` when the header could not be
    /// checked (unknown fields, or verification off).
    pub hash_verified: Option<bool>,
    /// Whether `transactions` holds the block's full transaction list (else only hashes were fetched).
    pub full_txs: bool,
    /// Full transactions, or empty when only hashes were fetched.
    pub transactions: Vec<Transaction>,
    /// Which provider served it.
    pub provider: ProviderId,
    /// The header's logs bloom (what filtered logs are checked against).
    pub logs_bloom: Option<Bloom>,
    /// The block's receipts and logs, once fetched and verified (`None`: not fetched).
    pub receipts: Option<BlockReceipts>,
    /// Without receipts: the logs the `[index]` selection keeps, fetched with `eth_getLogs` and
    /// checked against the header's bloom.
    pub logs: Option<BlockLogs>,
    /// The block's logs decoded into the `[index.contracts]` tables (rows and decode errors).
    pub decoded: Vec<crate::index::DecodedLog>,
    /// The provider's JSON of the block as it was checked (`[index] raw_json`), for `/rpc`.
    pub raw: Option<crate::rawjson::RawJson>,
}

impl Block {
    /// Every stored log of the block, in order: from its receipts, or the filtered ones.
    pub fn all_logs(&self) -> impl Iterator<Item = &Log> {
        let from_receipts = self.receipts.iter().flat_map(|r| r.receipts.iter().flat_map(|rc| rc.logs.iter()));
        from_receipts.chain(self.logs.iter().flat_map(|l| l.logs.iter()))
    }
}

/// A block's logs fetched by filter (no receipts), in log-index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockLogs {
    pub logs: Vec<Log>,
    /// Which provider served them.
    pub provider: ProviderId,
}

/// A block's receipts (one per transaction, in order) and how far they were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockReceipts {
    pub receipts: Vec<Receipt>,
    /// `Some(true)`: the receipts trie root equals the header's `receiptsRoot`; `Some(false)`:
    /// a receipt type this build cannot encode (an L2's), so the root could not be checked.
    pub root_verified: Option<bool>,
    /// Which provider served them.
    pub provider: ProviderId,
    /// The receipts' JSON array as served and verified (`[index] raw_json`), for `/rpc`.
    pub raw: Option<crate::rawjson::RawJson>,
    /// Their logs' JSON objects with each one's address and topics, kept with `raw`, for
    /// `eth_getLogs` and the sink.
    pub raw_logs: Option<crate::rawlogs::RawLogs>,
}

/// One transaction's receipt, as stored; wei amounts kept exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub tx_index: u32,
    pub tx_hash: B256,
    pub tx_type: u8,
    /// `None` before Byzantium (EIP-658), where the receipt holds `post_state` instead.
    pub status: Option<bool>,
    pub post_state: Option<B256>,
    pub gas_used: u64,
    pub cumulative_gas_used: u64,
    pub effective_gas_price: Option<U256>,
    pub contract_address: Option<Address>,
    pub blob_gas_used: Option<u64>,
    pub blob_gas_price: Option<U256>,
    /// The receipt's bloom (part of what the receipts root commits to; not stored).
    pub logs_bloom: Bloom,
    /// How many logs the receipt has (`logs` may keep fewer: the `[index]` selection).
    pub log_count: u32,
    pub logs: Vec<Log>,
}

/// One event log: its position in the block, and the log itself (address, topics, data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub log_index: u32,
    /// The transaction that emitted it.
    pub tx_index: u32,
    pub tx_hash: B256,
    pub inner: alloy_primitives::Log,
}

/// One transaction as stored; wei amounts kept exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub hash: B256,
    pub index: u32,
    pub from: Address,
    pub to: Option<Address>,
    pub value: U256,
    pub nonce: u64,
    pub gas: u64,
    pub gas_price: Option<U256>,
    pub max_fee_per_gas: Option<U256>,
    pub max_priority_fee_per_gas: Option<U256>,
    pub input: Bytes,
    pub tx_type: u8,
}

/// The head a provider reported: number and hash of its latest block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
}

/// How one JSON-RPC attempt ended. `as_str` is the stored text; users filter on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    Timeout,
    Connect,
    Http5xx,
    Http4xx,
    RateLimited,
    RpcError,
    InvalidResponse,
    TooLarge,
    NullResult,
    /// The caller stopped waiting (shutdown, a reorg restart, or a lost hedge race).
    Cancelled,
}

impl Outcome {
    /// The text stored in `provider_requests.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Http5xx => "http_5xx",
            Self::Http4xx => "http_4xx",
            Self::RateLimited => "rate_limited",
            Self::RpcError => "rpc_error",
            Self::InvalidResponse => "invalid_response",
            Self::TooLarge => "too_large",
            Self::NullResult => "null_result",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One JSON-RPC call as seen by the client: becomes one `provider_requests` row.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSample {
    pub ts_ms: i64,
    pub provider: ProviderId,
    pub method: &'static str,
    pub block_number: Option<u64>,
    pub latency_us: i64,
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub rpc_code: Option<i32>,
    pub bytes: Option<u64>,
    pub head_reported: Option<u64>,
    pub attempt: u32,
    pub hedged: bool,
    pub batch_size: u32,
    pub error: Option<String>,
    /// Provider credits (compute units) the call cost, by the configured price list.
    pub credits: u32,
}

/// A (height, hash) first reported by a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    pub provider: ProviderId,
    pub number: u64,
    pub hash: B256,
    pub seen_ms: i64,
}

/// A routing decision about one provider (breaker, cooldown, exclusion, primary switch…):
/// becomes one `provider_events` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    pub ts_ms: i64,
    pub provider: ProviderId,
    pub kind: EventKind,
    pub reason: String,
}

/// What a routing decision was. `as_str` is the text stored in `provider_events.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    BreakerOpen,
    BreakerHalfOpen,
    BreakerClosed,
    Cooldown,
    Excluded,
    Readmitted,
    PrimarySwitch,
    RateAdjusted,
    IntegrityPenalty,
    BudgetExhausted,
    WrongChain,
    /// Something learned about what the provider supports (a method it lacks).
    Capability,
    /// A `newHeads` subscription delivers heads; the provider is no longer polled.
    Subscribed,
    /// The subscription's connection closed or could not be opened; polled until it is back.
    SubscriptionLost,
    /// No head over the subscription while the chain advanced; polled, resubscribed later.
    SubscriptionSilent,
}

impl EventKind {
    /// Every kind, in documentation order.
    pub const ALL: [Self; 15] = [
        Self::BreakerOpen,
        Self::BreakerHalfOpen,
        Self::BreakerClosed,
        Self::Cooldown,
        Self::Excluded,
        Self::Readmitted,
        Self::PrimarySwitch,
        Self::RateAdjusted,
        Self::IntegrityPenalty,
        Self::BudgetExhausted,
        Self::WrongChain,
        Self::Capability,
        Self::Subscribed,
        Self::SubscriptionLost,
        Self::SubscriptionSilent,
    ];

    /// The stored and logged name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BreakerOpen => "breaker_open",
            Self::BreakerHalfOpen => "breaker_half_open",
            Self::BreakerClosed => "breaker_closed",
            Self::Cooldown => "cooldown",
            Self::Excluded => "excluded",
            Self::Readmitted => "readmitted",
            Self::PrimarySwitch => "primary_switch",
            Self::RateAdjusted => "rate_adjusted",
            Self::IntegrityPenalty => "integrity_penalty",
            Self::BudgetExhausted => "budget_exhausted",
            Self::WrongChain => "wrong_chain",
            Self::Capability => "capability",
            Self::Subscribed => "subscribed",
            Self::SubscriptionLost => "subscription_lost",
            Self::SubscriptionSilent => "subscription_silent",
        }
    }

    /// Worth a WARN line (the provider lost traffic), rather than INFO.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            Self::BreakerOpen
                | Self::WrongChain
                | Self::IntegrityPenalty
                | Self::BudgetExhausted
                | Self::Excluded
                | Self::SubscriptionSilent
        )
    }
}

/// A method whose support is learned per provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapabilityMethod {
    BlockReceipts,
    Logs,
}

impl CapabilityMethod {
    /// The JSON-RPC method name, as stored in `provider_capabilities.method`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlockReceipts => "eth_getBlockReceipts",
            Self::Logs => "eth_getLogs",
        }
    }

    /// The method of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::BlockReceipts, Self::Logs].into_iter().find(|m| m.as_str() == s)
    }
}

/// Something learned about what one provider supports: one `provider_capabilities` row (the
/// latest per provider and method) and one `capability` provider event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityRecord {
    pub ts_ms: i64,
    pub provider: ProviderId,
    pub method: CapabilityMethod,
    pub supported: bool,
    /// For `eth_getLogs`: the widest block range known to be accepted.
    pub max_range: Option<u64>,
    pub detail: String,
    /// Worth a provider event too (traffic moves: a method found missing, found again, or a
    /// narrower range), not only the row.
    pub notable: bool,
}

/// Everything the telemetry writer persists.
#[derive(Debug, Clone, PartialEq)]
pub enum TelemetryEvent {
    Request(RequestSample),
    Sighting(Sighting),
    Provider(ProviderEvent),
    Capability(CapabilityRecord),
    Client(ClientCall),
}

/// How a client's `/rpc` call ended. `as_str` is the stored text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOutcome {
    Ok,
    /// A JSON-RPC error from the node or the store (a revert, bad params, not found).
    RpcError,
    /// Refused before anyone was asked (malformed, a filter, a limit).
    Refused,
}

impl ClientOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::RpcError => "rpc_error",
            Self::Refused => "refused",
        }
    }
}

/// One call a client made to `/rpc`: becomes one `client_requests` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCall {
    pub ts_ms: i64,
    /// The API key's name, when the call carried one.
    pub key_name: Option<String>,
    pub method: &'static str,
    /// `store`, a provider's name, or `blockstreamer`.
    pub source: String,
    pub latency_us: i64,
    pub outcome: ClientOutcome,
    pub rpc_code: Option<i32>,
    /// Bytes of this call's response.
    pub bytes: u64,
    pub batch_size: u32,
}

/// The sending side of the telemetry channel. Never blocks: when the channel is full the event
/// is dropped and counted, because losing a sample is better than stalling ingest.
#[derive(Debug, Clone)]
pub struct TelemetrySink {
    tx: Option<mpsc::Sender<TelemetryEvent>>,
    dropped: Arc<AtomicU64>,
}

impl TelemetrySink {
    /// A sink over a bounded channel; the receiver belongs to the telemetry writer.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<TelemetryEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx: Some(tx), dropped: Arc::default() }, rx)
    }

    /// A sink that records nothing (telemetry off).
    pub fn disabled() -> Self {
        Self { tx: None, dropped: Arc::default() }
    }

    /// Offer an event; drops and counts it if the writer is behind.
    pub fn record(&self, event: TelemetryEvent) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped because the channel was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A canonical block already stored: what ingest needs to check parent links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainLink {
    pub number: u64,
    pub hash: B256,
}

/// A reorg to apply atomically with the new branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reorg {
    pub detected_at_ms: i64,
    /// Number of canonical blocks replaced (old tip − fork point).
    pub depth: u64,
    pub fork: ChainLink,
    pub old_tip: ChainLink,
    pub new_tip: ChainLink,
    pub provider: ProviderId,
}

/// One atomic write: optionally un-canonicalise above a fork point, then append blocks in order.
#[derive(Debug, Clone, Default)]
pub struct CommitBatch {
    pub reorg: Option<Reorg>,
    pub blocks: Vec<Block>,
}

/// Where ingest commits. The store implements it; the composition root wires it. `commit`
/// returns only after the batch is durable (or failed as a whole).
pub trait BlockSink: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Apply the batch in one transaction: all of it, or none of it.
    fn commit(&self, batch: CommitBatch) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Does this error mean "out of space" (ingest pauses and says so) rather than a failure?
    fn is_storage_full(_e: &Self::Error) -> bool {
        false
    }

    /// A catch-up of `blocks` appended heights starts: switch to the sink's fast append path if
    /// it has one (and is not on it already), dropping what is cheaper rebuilt once when the
    /// catch-up is at least `rebuild_min` blocks or larger than what is stored. Returns whether
    /// it switched; then [`end_catch_up`](Self::end_catch_up) must follow.
    fn begin_catch_up(
        &self,
        _blocks: u64,
        _rebuild_min: u64,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send {
        async { Ok(false) }
    }

    /// Back to the tip path after [`begin_catch_up`](Self::begin_catch_up) returned true.
    fn end_catch_up(&self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }
}

/// What ingest is doing, for health reporting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IngestState {
    #[default]
    Starting,
    /// Steps succeed.
    Following,
    /// Commits fail with "storage full"; ingest retries and resumes when space is freed.
    StorageFull,
    /// A reorg deeper than the limit: ingest stopped, nothing was rewritten.
    ReorgTooDeep { number: u64 },
    /// Steps fail for another reason (all providers down, …); ingest keeps retrying.
    Stalled(String),
}

/// What a gap scan found below the stored head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GapScan {
    /// Lowest and highest canonical height stored.
    pub floor: Option<u64>,
    pub tip: Option<u64>,
    /// Missing canonical ranges, inclusive, lowest first.
    pub missing: Vec<(u64, u64)>,
    /// Heights whose canonical block's parent hash is not the canonical hash just below.
    pub broken_links: Vec<u64>,
    /// Canonical heights stored without their receipts and logs (when receipts are indexed),
    /// as inclusive ranges, lowest first.
    pub missing_receipts: Vec<(u64, u64)>,
}

/// The result of trying to splice a fetched range into the stored chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairOutcome {
    /// Stored: `inserted` heights were missing, `replaced` held another block (now non-canonical).
    Repaired { inserted: usize, replaced: usize },
    /// The stored block below the range is not the fetched range's parent; nothing written.
    BelowMismatch,
    /// The stored block above the range does not name the range's last block as parent;
    /// nothing written.
    AboveMismatch,
}

/// One repair attempt: becomes a `gap_repairs` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairRecord {
    pub detected_at_ms: i64,
    pub attempted_at_ms: i64,
    pub from: u64,
    pub to: u64,
    pub reason: RepairReason,
    pub provider: Option<ProviderId>,
    pub outcome: RepairResult,
    pub blocks: u64,
    pub error: Option<String>,
}

/// Why a range was repaired. `as_str` is the text in `gap_repairs.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairReason {
    /// Canonical heights absent.
    Missing,
    /// A canonical block whose parent hash is not the canonical block below.
    BrokenLink,
    /// A canonical block stored without its receipts and logs.
    Receipts,
    /// A canonical block stored without the logs the `[index]` selection keeps (no receipts).
    Logs,
}

impl RepairReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::BrokenLink => "broken_link",
            Self::Receipts => "receipts",
            Self::Logs => "logs",
        }
    }
}

/// How a repair attempt ended. `as_str` is the text in `gap_repairs.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairResult {
    Repaired,
    /// Nobody served the range, or the fetched blocks did not link among themselves.
    Failed,
    /// The fetched range did not link to the stored blocks around it; nothing written.
    LinkMismatch,
}

impl RepairResult {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Repaired => "repaired",
            Self::Failed => "failed",
            Self::LinkMismatch => "link_mismatch",
        }
    }
}

/// Where the gap-repair worker reads holes and writes repairs. The store implements it.
pub trait RepairSink: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Find holes and broken parent links among the canonical blocks.
    fn scan_gaps(&self) -> impl Future<Output = Result<GapScan, Self::Error>> + Send;

    /// Splice `blocks` (contiguous, ascending, linked) into the canonical chain in one
    /// transaction, only if they link to the stored neighbours on both sides.
    fn repair(&self, blocks: Vec<Block>) -> impl Future<Output = Result<RepairOutcome, Self::Error>> + Send;

    /// Log one attempt.
    fn record_repair(&self, r: RepairRecord) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Store the receipts `blocks` carry for the blocks that are still canonical, in one
    /// transaction. Returns how many blocks got them (a block that is no longer canonical is
    /// skipped: the chain moved).
    fn add_receipts(&self, blocks: Vec<Block>) -> impl Future<Output = Result<usize, Self::Error>> + Send;
}

/// The whole process in one word, for `/readyz`, `/v1/status` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Ok,
    /// No provider can serve, or ingest steps keep failing.
    Degraded,
    /// Commits fail because the database is full.
    StorageFull,
    /// A reorg deeper than `max_reorg_depth` stopped ingest.
    ReorgTooDeep,
}

impl HealthState {
    /// The name the API shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::StorageFull => "storage_full",
            Self::ReorgTooDeep => "reorg_too_deep",
        }
    }
}

//! Deterministic, realistic ecommerce tracking events for benchmarks, tests and demos.
//!
//! A [`SampleStream`] produces one event object per call (about 600 bytes on average), the way
//! TrackLayer's web and app SDKs send them: seven merchants in USD, EUR and GBP; platforms
//! web/ios/android with matching `source` libraries; the funnel `view_content`,
//! `add_to_cart`, `begin_checkout`, `purchase`; known users (`user_id`, now and then as an
//! integer) and anonymous ids; order ids on purchases; values with two decimals (sometimes as
//! strings, sometimes a lower-case currency); `consent_status`; `properties` with products
//! (ids, names with accents, emoji and escaped quotes, prices, quantities), page and UTM
//! fields; an unknown `context` object (locale, ip, os); `event_time` as RFC 3339 in the
//! merchant's offset or in UTC, with millisecond, microsecond or no fraction, or as epoch
//! milliseconds. Event ids are unique within a stream.
//!
//! With [`SampleStream::bad_every`], every n-th event is invalid, cycling through the
//! [`Defect`]s (or those given to [`SampleStream::defects`]). With [`SampleStream::id_prefix`],
//! event ids say which events are valid: `<prefix>-v<n>` and `<prefix>-b<n>`. The same seed
//! always gives the same events (the generator is a SplitMix64 written out below, so no
//! dependency is needed).

use std::fmt::Write;

use time::{OffsetDateTime, UtcOffset};

use tracklayer::event::Reason;

/// An endless, seeded stream of event JSON texts.
#[derive(Debug, Clone)]
pub struct SampleStream {
    rng: SplitMix64,
    id_seed: u64,
    id_prefix: Option<String>,
    produced: u64,
    bad_every: u32,
    defects: Vec<Defect>,
    bad_produced: usize,
}

/// One generated event and, if it was made invalid on purpose, how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The event's JSON text, as it would arrive in a message body.
    pub json: String,
    /// The defect built into it, `None` for a valid event.
    pub defect: Option<Defect>,
}

/// A way in which [`SampleStream`] makes an event invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Defect {
    /// `merchant_id` left out.
    MissingMerchantId,
    /// `value` as `"12,50"` (comma as decimal separator).
    CommaDecimalValue,
    /// `currency` as `"EURO"`.
    FourLetterCurrency,
    /// `properties` as an array instead of an object.
    PropertiesArray,
    /// The JSON text cut off part-way, as by a broken client.
    BrokenJson,
}

impl Defect {
    /// Every defect, in the order a stream cycles through them.
    pub const ALL: [Defect; 5] = [
        Defect::MissingMerchantId,
        Defect::CommaDecimalValue,
        Defect::FourLetterCurrency,
        Defect::PropertiesArray,
        Defect::BrokenJson,
    ];

    /// The defect's name in `snake_case`, as `sample-events` prints and reads it.
    pub fn name(self) -> &'static str {
        match self {
            Defect::MissingMerchantId => "missing_merchant_id",
            Defect::CommaDecimalValue => "comma_decimal_value",
            Defect::FourLetterCurrency => "four_letter_currency",
            Defect::PropertiesArray => "properties_array",
            Defect::BrokenJson => "broken_json",
        }
    }

    /// The defect named `name` (the inverse of [`Defect::name`]).
    pub fn from_name(name: &str) -> Option<Defect> {
        Defect::ALL.into_iter().find(|defect| defect.name() == name)
    }

    /// Whether an event with this defect can sit in a JSON array body and leave its
    /// neighbours loadable (cut-off JSON makes the whole array unreadable).
    pub fn fits_in_array(self) -> bool {
        self != Defect::BrokenJson
    }

    /// The rejection reason the event contract gives an event with this defect.
    pub fn reason(self) -> Reason {
        match self {
            Defect::MissingMerchantId => Reason::MissingField,
            Defect::CommaDecimalValue | Defect::FourLetterCurrency | Defect::PropertiesArray => {
                Reason::InvalidField
            }
            Defect::BrokenJson => Reason::InvalidJson,
        }
    }
}

impl SampleStream {
    /// A stream of valid events; the same seed gives the same events.
    pub fn new(seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let id_seed = rng.next_u64();
        SampleStream {
            rng,
            id_seed,
            id_prefix: None,
            produced: 0,
            bad_every: 0,
            defects: Defect::ALL.to_vec(),
            bad_produced: 0,
        }
    }

    /// Event ids `<prefix>-v<n>` for valid events and `<prefix>-b<n>` for defective ones
    /// (`n` counts from 1, seven digits at least), instead of UUID-shaped ids.
    pub fn id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.id_prefix = Some(prefix.into());
        self
    }

    /// The defects bad events cycle through, in this order (default [`Defect::ALL`]); an
    /// empty list turns bad events off.
    pub fn defects(mut self, defects: &[Defect]) -> Self {
        self.defects = defects.to_vec();
        self
    }

    /// Makes every `n`-th event (the n-th, 2n-th, ...) invalid; `bad_every(100)` gives 1% bad
    /// events. `0` turns bad events off.
    pub fn bad_every(mut self, n: u32) -> Self {
        self.bad_every = n;
        self
    }

    /// The next event's JSON text.
    pub fn next_event(&mut self) -> String {
        self.next_sample().json
    }

    /// The next event, with the defect it was given, if any.
    pub fn next_sample(&mut self) -> Sample {
        self.next_sample_where(|_| true)
    }

    /// The next event for a JSON array body: a defect that does not fit in an array
    /// ([`Defect::fits_in_array`]) is skipped for the next one in the cycle that does; with
    /// none that does, the event is valid.
    pub fn next_sample_in_array(&mut self) -> Sample {
        self.next_sample_where(Defect::fits_in_array)
    }

    fn next_sample_where(&mut self, allowed: impl Fn(Defect) -> bool) -> Sample {
        self.produced += 1;
        let due = self.bad_every > 0 && self.produced.is_multiple_of(u64::from(self.bad_every));
        let defect = if due {
            let count = self.defects.len();
            (0..count)
                .map(|step| (step, self.defects[(self.bad_produced + step) % count]))
                .find(|&(_, defect)| allowed(defect))
                .map(|(step, defect)| {
                    self.bad_produced += step + 1;
                    defect
                })
        } else {
            None
        };
        let mut json = self.write_event(defect);
        if defect == Some(Defect::BrokenJson) {
            let mut cut = json.len() * 3 / 5;
            while !json.is_char_boundary(cut) {
                cut -= 1;
            }
            json.truncate(cut);
        }
        Sample { json, defect }
    }

    fn write_event(&mut self, defect: Option<Defect>) -> String {
        let rng = &mut self.rng;
        let merchant = rng.pick(MERCHANTS);
        let (platform, source) = match rng.below(100) {
            0..60 => ("web", "tracklayer-js/3.4.1"),
            60..85 => ("ios", "tracklayer-ios/2.1.0"),
            _ => ("android", "tracklayer-android/2.0.7"),
        };
        let event_name = match rng.below(100) {
            0..55 => "view_content",
            55..80 => "add_to_cart",
            80..92 => "begin_checkout",
            _ => "purchase",
        };
        let product_count = if event_name == "purchase" || event_name == "begin_checkout" {
            1 + rng.below(2) as usize
        } else {
            1
        };
        let products: Vec<(&Product, u64, u64)> = (0..product_count)
            .map(|_| {
                let product = rng.pick(PRODUCTS);
                let cents = product.cents + rng.below(5) * 100;
                let quantity = if event_name == "view_content" {
                    1
                } else {
                    1 + rng.below(3)
                };
                (product, cents, quantity)
            })
            .collect();
        let total_cents: u64 = products.iter().map(|(_, cents, qty)| cents * qty).sum();

        // Writing into a String cannot fail, hence the ignored `write!` results.
        let mut json = String::with_capacity(900);
        let (time_low, variant) = (rng.below(0x1000), 0x8000 | rng.below(0x4000));
        match &self.id_prefix {
            Some(prefix) => {
                let mark = if defect.is_some() { 'b' } else { 'v' };
                let _ = write!(
                    json,
                    r#"{{"event_id":"{prefix}-{mark}{:07}","event_time":"#,
                    self.produced
                );
            }
            None => {
                let _ = write!(
                    json,
                    r#"{{"event_id":"{:08x}-{:04x}-4{time_low:03x}-{variant:04x}-{:012x}","event_time":"#,
                    self.id_seed >> 32,
                    (self.id_seed >> 16) & 0xffff,
                    self.produced,
                );
            }
        }
        write_event_time(&mut json, rng, merchant.offset_minutes);
        if defect != Some(Defect::MissingMerchantId) {
            let _ = write!(json, r#","merchant_id":"{}""#, merchant.id);
        }
        let _ = write!(
            json,
            r#","event_name":"{event_name}","platform":"{platform}","source":"{source}""#
        );
        let user = rng.below(5000);
        match rng.below(100) {
            0..55 => {
                let _ = write!(json, r#","user_id":"usr_{user:06}""#);
            }
            55..60 => {
                let _ = write!(json, r#","user_id":{}"#, 100_000 + user);
            }
            60..65 => json.push_str(r#","user_id":null"#),
            _ => {}
        }
        let _ = write!(json, r#","anonymous_id":"anon_{:016x}""#, rng.next_u64());
        if event_name == "purchase" {
            let _ = write!(
                json,
                r#","order_id":"ORD-{}-{:08}""#,
                merchant.order_prefix,
                rng.below(100_000_000)
            );
        }
        let (units, cents) = (total_cents / 100, total_cents % 100);
        let _ = match defect {
            Some(Defect::CommaDecimalValue) => write!(json, r#","value":"{units},{cents:02}""#),
            _ if rng.below(100) < 10 => write!(json, r#","value":"{units}.{cents:02}""#),
            _ => write!(json, r#","value":{units}.{cents:02}"#),
        };
        let currency = match defect {
            Some(Defect::FourLetterCurrency) => "EURO",
            _ if rng.below(100) < 5 => merchant.currency_lower,
            _ => merchant.currency,
        };
        let _ = write!(json, r#","currency":"{currency}""#);
        match rng.below(100) {
            0..85 => json.push_str(r#","consent_status":"granted""#),
            85..90 => json.push_str(r#","consent_status":"denied""#),
            90..95 => json.push_str(r#","consent_status":"not_required""#),
            _ => {}
        }
        write_properties(
            &mut json,
            rng,
            merchant,
            &products,
            defect == Some(Defect::PropertiesArray),
        );
        let os = match platform {
            "ios" => *rng.pick(&["iOS 18.1", "iOS 17.6"]),
            "android" => *rng.pick(&["Android 15", "Android 14"]),
            _ => *rng.pick(&["Windows 11", "macOS 14.6", "iOS 18.1", "Android 15"]),
        };
        let _ = write!(
            json,
            r#","context":{{"locale":"{}","ip":"203.0.113.{}","os":"{os}"}}}}"#,
            merchant.locale,
            rng.below(255),
        );
        json
    }
}

impl Iterator for SampleStream {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        Some(self.next_event())
    }
}

fn write_event_time(json: &mut String, rng: &mut SplitMix64, offset_minutes: i16) {
    // Two weeks from 2026-11-02T00:00:00Z.
    const START_MILLIS: i64 = 1_793_577_600_000;
    let millis = START_MILLIS + rng.below(14 * 86_400_000) as i64;
    let style = rng.below(100);
    if style >= 80 {
        let _ = write!(json, "{millis}");
        return;
    }
    let micros = rng.below(1000) as i64;
    let utc =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis * 1_000_000 + micros * 1_000))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let offset = if style < 35 || (60..70).contains(&style) {
        UtcOffset::from_whole_seconds(i32::from(offset_minutes) * 60).unwrap_or(UtcOffset::UTC)
    } else {
        UtcOffset::UTC
    };
    let local = utc.to_offset(offset);
    let _ = write!(
        json,
        "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        local.year(),
        u8::from(local.month()),
        local.day(),
        local.hour(),
        local.minute(),
        local.second()
    );
    match style {
        0..60 => {
            let _ = write!(json, ".{:03}", local.millisecond());
        }
        70..80 => {
            let _ = write!(json, ".{:06}", local.microsecond());
        }
        _ => {}
    }
    if offset == UtcOffset::UTC {
        json.push_str("Z\"");
    } else {
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let minutes = offset_minutes.unsigned_abs();
        let _ = write!(json, "{sign}{:02}:{:02}\"", minutes / 60, minutes % 60);
    }
}

fn write_properties(
    json: &mut String,
    rng: &mut SplitMix64,
    merchant: &Merchant,
    products: &[(&Product, u64, u64)],
    as_array: bool,
) {
    let mut items = String::with_capacity(120 * products.len());
    for (i, (product, cents, quantity)) in products.iter().enumerate() {
        if i > 0 {
            items.push(',');
        }
        let _ = write!(
            items,
            r#"{{"product_id":"{}","name":"{}","price":{}.{:02},"quantity":{}}}"#,
            product.sku,
            product.name,
            cents / 100,
            cents % 100,
            quantity
        );
    }
    if as_array {
        let _ = write!(json, r#","properties":[{items}]"#);
        return;
    }
    let (first, _, _) = products[0];
    let _ = write!(
        json,
        r#","properties":{{"page_url":"https://{}/products/{}","products":[{items}]"#,
        merchant.domain, first.slug
    );
    if rng.below(100) < 30 {
        let (utm_source, utm_medium) = *rng.pick(&[
            ("newsletter", "email"),
            ("google", "cpc"),
            ("instagram", "social"),
            ("partner_blog", "referral"),
        ]);
        let campaign = rng.pick(&[
            "black_friday_2026",
            "winter_sale",
            "retargeting_q4",
            "brand",
        ]);
        let _ = write!(
            json,
            r#","utm_source":"{utm_source}","utm_medium":"{utm_medium}","utm_campaign":"{campaign}""#
        );
    }
    let _ = write!(json, r#","session_id":"s_{:012x}"}}"#, rng.below(1 << 48));
}

/// SplitMix64: small, fast, and good enough for test data; not for anything secret.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A shop: its id, domain, order-id prefix, currency (upper and lower case), locale and UTC
/// offset in minutes.
struct Merchant {
    id: &'static str,
    domain: &'static str,
    order_prefix: &'static str,
    currency: &'static str,
    currency_lower: &'static str,
    locale: &'static str,
    offset_minutes: i16,
}

const fn merchant(
    id: &'static str,
    domain: &'static str,
    order_prefix: &'static str,
    (currency, currency_lower): (&'static str, &'static str),
    locale: &'static str,
    offset_minutes: i16,
) -> Merchant {
    Merchant {
        id,
        domain,
        order_prefix,
        currency,
        currency_lower,
        locale,
        offset_minutes,
    }
}

const EUR: (&str, &str) = ("EUR", "eur");
const USD: (&str, &str) = ("USD", "usd");
const GBP: (&str, &str) = ("GBP", "gbp");

#[rustfmt::skip]
const MERCHANTS: &[Merchant] = &[
    merchant("mrc_nordic_outdoor", "nordic-outdoor.example", "NO", EUR, "de-DE", 60),
    merchant("mrc_casa_bella", "casabella.example", "CB", EUR, "it-IT", 60),
    merchant("mrc_maple_home", "maplehome.example", "MH", USD, "en-US", -300),
    merchant("mrc_pacific_tech", "pacifictech.example", "PT", USD, "en-US", -480),
    merchant("mrc_thames_tea", "thamestea.example", "TT", GBP, "en-GB", 0),
    merchant("mrc_sakura_living", "sakura-living.example", "SL", USD, "ja-JP", 540),
    merchant("mrc_mumbai_craft", "mumbaicraft.example", "MC", GBP, "en-IN", 330),
];

/// A catalog entry: SKU, URL slug, name (already escaped for a JSON string), price in cents.
struct Product {
    sku: &'static str,
    slug: &'static str,
    name: &'static str,
    cents: u64,
}

const fn product(sku: &'static str, slug: &'static str, name: &'static str, cents: u64) -> Product {
    Product {
        sku,
        slug,
        name,
        cents,
    }
}

#[rustfmt::skip]
const PRODUCTS: &[Product] = &[
    product("SKU-10482", "trail-runner-gtx", "Trail Runner GTX", 12_995),
    product("SKU-20417", "cafe-creme-mug", "Café crème mug ☕", 1_450),
    product("SKU-31877", "down-jacket-nordlys", "Down Jacket «Nordlys»", 24_900),
    product("SKU-40021", "laptop-sleeve-15", r#"15\" Laptop Sleeve"#, 3_499),
    product("SKU-51230", "sencha-green-tea", "Sencha Green Tea 100g", 899),
    product("SKU-60555", "futon-tokyo-deluxe", "Futon 東京 Deluxe", 45_000),
    product("SKU-70310", "wool-socks-3-pack", "Wool Socks (3-pack)", 1_995),
    product("SKU-80999", "espresso-machine-pro", "Espresso Machine Pro", 38_950),
    product("SKU-91004", "yoga-mat-cork", "Yoga Mat – Cork", 5_990),
    product("SKU-11876", "pashmina-shawl", "Pashmina Shawl 🧣", 7_900),
    product("SKU-12650", "anc-headphones", "Noise-cancelling Headphones", 19_999),
    product("SKU-13402", "smorrebrod-cookbook", "Smørrebrød Cookbook", 2_850),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use tracklayer::event::parse_body;

    #[test]
    fn same_seed_gives_same_events_and_other_seeds_differ() {
        let a: Vec<String> = SampleStream::new(7).bad_every(10).take(200).collect();
        let b: Vec<String> = SampleStream::new(7).bad_every(10).take(200).collect();
        let c: Vec<String> = SampleStream::new(8).bad_every(10).take(200).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn valid_samples_parse_and_defective_ones_get_their_reason() {
        let mut stream = SampleStream::new(42).bad_every(20);
        let mut defects = HashSet::new();
        for _ in 0..5_000 {
            let sample = stream.next_sample();
            let parsed = parse_body(&sample.json);
            assert_eq!(parsed.len(), 1, "{}", sample.json);
            match (&parsed[0], sample.defect) {
                (Ok(event), None) => assert_eq!(event.raw(), sample.json),
                (Err(rejection), Some(defect)) => {
                    assert_eq!(rejection.reason, defect.reason(), "{}", rejection.detail);
                    defects.insert(defect);
                }
                (outcome, defect) => panic!("{defect:?} gave {outcome:?} for {}", sample.json),
            }
        }
        assert_eq!(defects.len(), Defect::ALL.len());
    }

    #[test]
    fn bad_every_100_makes_exactly_one_percent_bad() {
        let mut stream = SampleStream::new(1).bad_every(100);
        let bad = (0..10_000)
            .filter(|_| stream.next_sample().defect.is_some())
            .count();
        assert_eq!(bad, 100);
        let mut clean = SampleStream::new(1);
        assert!((0..1_000).all(|_| clean.next_sample().defect.is_none()));
    }

    #[test]
    fn event_ids_are_unique() {
        let mut ids = HashSet::new();
        for json in SampleStream::new(3).take(20_000) {
            let event = parse_body(&json).remove(0).unwrap();
            assert!(ids.insert(event.event_id().to_owned()));
        }
    }

    #[test]
    fn events_average_about_600_bytes_and_cover_the_funnel() {
        let events: Vec<String> = SampleStream::new(5).take(10_000).collect();
        let average = events.iter().map(String::len).sum::<usize>() / events.len();
        assert!((570..=630).contains(&average), "average {average} bytes");
        let names: HashSet<String> = events
            .iter()
            .map(|json| parse_body(json).remove(0).unwrap().event_name().to_owned())
            .collect();
        assert_eq!(names.len(), 4);
        let epoch_millis = events
            .iter()
            .filter(|json| json.contains(r#""event_time":1"#))
            .count();
        assert!(epoch_millis > 1_000, "{epoch_millis}");
    }
}

//! The sandbox's data: the CRM objects of each type, their associations, and
//! the rules HubSpot applies when they change (property validation, the
//! system properties it maintains, search filters and sorts).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::by_modified::{ByModified, indexed};

/// The object types the sandbox serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectType {
    /// `contacts`, type id `0-1`.
    Contacts,
    /// `companies`, type id `0-2`.
    Companies,
    /// `deals`, type id `0-3`.
    Deals,
    /// `line_items`, type id `0-8`.
    LineItems,
}

impl ObjectType {
    /// Every type.
    pub const ALL: [ObjectType; 4] = [
        ObjectType::Contacts,
        ObjectType::Companies,
        ObjectType::Deals,
        ObjectType::LineItems,
    ];

    /// The type named in a path: a plural name, a singular one or a type id.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "contacts" | "contact" | "0-1" => ObjectType::Contacts,
            "companies" | "company" | "0-2" => ObjectType::Companies,
            "deals" | "deal" | "0-3" => ObjectType::Deals,
            "line_items" | "line_item" | "0-8" => ObjectType::LineItems,
            _ => return None,
        })
    }

    /// The plural name (`contacts`).
    pub fn name(self) -> &'static str {
        match self {
            ObjectType::Contacts => "contacts",
            ObjectType::Companies => "companies",
            ObjectType::Deals => "deals",
            ObjectType::LineItems => "line_items",
        }
    }

    /// The type id (`0-1`).
    pub fn type_id(self) -> &'static str {
        match self {
            ObjectType::Contacts => "0-1",
            ObjectType::Companies => "0-2",
            ObjectType::Deals => "0-3",
            ObjectType::LineItems => "0-8",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            ObjectType::Contacts => "contact",
            ObjectType::Companies => "company",
            ObjectType::Deals => "deal",
            ObjectType::LineItems => "line_item",
        }
    }

    /// Properties a client may set (the portal's property definitions,
    /// including the custom `nexo_idempotency_key`).
    fn writable(self) -> &'static [&'static str] {
        match self {
            ObjectType::Contacts => &[
                "firstname",
                "lastname",
                "email",
                "phone",
                "company",
                "city",
                "country",
                "lifecyclestage",
                "jobtitle",
                "website",
                "nexo_idempotency_key",
            ],
            ObjectType::Companies => &[
                "name",
                "domain",
                "city",
                "country",
                "industry",
                "phone",
                "address",
                "zip",
                "nexo_idempotency_key",
            ],
            ObjectType::Deals => &[
                "dealname",
                "amount",
                "dealstage",
                "pipeline",
                "closedate",
                "deal_currency_code",
                "description",
                "nexo_idempotency_key",
                // Custom properties a portal adds for invoices kept in the
                // accounting system (see plugins/hubspot/README.md).
                "nexo_invoice_number",
                "nexo_invoice_status",
                "nexo_amount_due",
            ],
            ObjectType::LineItems => &[
                "name",
                "price",
                "quantity",
                "hs_sku",
                "description",
                "hs_product_id",
                "nexo_idempotency_key",
            ],
        }
    }

    /// Properties returned when a request names none.
    fn defaults(self) -> &'static [&'static str] {
        match self {
            ObjectType::Contacts => &["firstname", "lastname", "email"],
            ObjectType::Companies => &["name", "domain"],
            ObjectType::Deals => &["dealname", "amount", "dealstage", "pipeline", "closedate"],
            ObjectType::LineItems => &["name", "price", "quantity"],
        }
    }

    /// System properties, always returned, read-only.
    fn system(self) -> &'static [&'static str] {
        match self {
            ObjectType::Contacts => &[
                "hs_object_id",
                "createdate",
                "lastmodifieddate",
                "hs_lastmodifieddate",
            ],
            _ => &["hs_object_id", "createdate", "hs_lastmodifieddate"],
        }
    }

    pub(crate) fn is_modification_time(name: &str) -> bool {
        matches!(name, "hs_lastmodifieddate" | "lastmodifieddate")
    }

    fn id_base(self) -> u64 {
        match self {
            ObjectType::Contacts => 100_000,
            ObjectType::Companies => 5_000_000,
            ObjectType::Deals => 9_000_000,
            ObjectType::LineItems => 13_000_000,
        }
    }
}

/// HubSpot's deal stages of the default sales pipeline.
pub const DEAL_STAGES: [&str; 7] = [
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
];

/// One CRM object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmObject {
    /// Numeric id (HubSpot ids travel as strings).
    pub id: u64,
    /// Properties set on it (system properties are derived).
    pub properties: BTreeMap<String, String>,
    /// Creation, milliseconds since the epoch.
    pub created_ms: i64,
    /// Last modification, milliseconds since the epoch.
    pub updated_ms: i64,
    /// Archived (deleted) objects are hidden from reads.
    pub archived: bool,
}

impl CrmObject {
    /// A property's value, system properties included.
    pub fn property(&self, name: &str) -> Option<String> {
        match name {
            "hs_object_id" => Some(self.id.to_string()),
            "createdate" => Some(iso(self.created_ms)),
            "hs_lastmodifieddate" | "lastmodifieddate" => Some(iso(self.updated_ms)),
            _ => self.properties.get(name).cloned(),
        }
    }
}

/// Why a property value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyError {
    /// The property.
    pub name: String,
    /// HubSpot's error code (`INVALID_EMAIL`, `PROPERTY_DOESNT_EXIST`, ...).
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

/// A failed change of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    /// No such (unarchived) object.
    NotFound(u64),
    /// Property values were not valid.
    Invalid(Vec<PropertyError>),
}

/// Milliseconds as HubSpot's ISO 8601 form (`2026-01-05T10:00:00.123Z`).
pub fn iso(ms: i64) -> String {
    // Years 0-9999 by hand: chrono's `format` parses its pattern on every
    // call, which was a fifth of the sandbox's CPU when serving pages (four
    // times per object).
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default();
    }
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// A time given as milliseconds or ISO 8601, in milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(ms) = s.trim().parse::<i64>() {
        return Some(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|d| d.timestamp_millis())
}

/// Whether `s` is a decimal number (`12`, `-3.50`).
pub fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let mut parts = digits.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

fn is_email(s: &str) -> bool {
    let mut parts = s.splitn(2, '@');
    let (local, domain) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !s.contains(char::is_whitespace)
}

/// Check property values as HubSpot's property definitions would.
pub fn validate(ty: ObjectType, props: &BTreeMap<String, String>) -> Vec<PropertyError> {
    let mut errors = Vec::new();
    for (name, value) in props {
        let refuse = |code, message: String| PropertyError {
            name: name.clone(),
            code,
            message,
        };
        if ty.system().contains(&name.as_str()) {
            errors.push(refuse(
                "READ_ONLY_VALUE",
                format!("{name} is a read only property; its value cannot be set."),
            ));
            continue;
        }
        if !ty.writable().contains(&name.as_str()) {
            errors.push(refuse(
                "PROPERTY_DOESNT_EXIST",
                format!("Property \"{name}\" does not exist"),
            ));
            continue;
        }
        if value.is_empty() {
            continue; // clears the property
        }
        let bad = match name.as_str() {
            "email" if !is_email(value) => {
                Some(("INVALID_EMAIL", format!("Email address {value} is invalid")))
            }
            "amount" | "price" | "quantity" if !is_decimal(value) => Some((
                "INVALID_DECIMAL",
                format!("{value} was not a valid number."),
            )),
            "dealstage" if !DEAL_STAGES.contains(&value.as_str()) => Some((
                "INVALID_OPTION",
                format!(
                    "{value} was not one of the allowed options: [{}]",
                    DEAL_STAGES.join(", ")
                ),
            )),
            "closedate" if parse_time(value).is_none() && !is_date(value) => Some((
                "INVALID_DATE",
                format!("{value} was not a valid date or date-time."),
            )),
            _ => None,
        };
        if let Some((code, message)) = bad {
            errors.push(refuse(code, message));
        }
    }
    errors
}

fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// A search filter (`PublicObjectSearchRequest.filterGroups[].filters[]`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Property.
    pub property_name: String,
    /// `EQ`, `GT`, `GTE`, ...
    pub operator: String,
    /// Value compared to.
    #[serde(default)]
    pub value: Option<Value>,
    /// Upper bound of `BETWEEN`.
    #[serde(default)]
    pub high_value: Option<Value>,
    /// Values of `IN`/`NOT_IN`.
    #[serde(default)]
    pub values: Option<Vec<Value>>,
}

/// A sort: `"prop"`/`"-prop"` or `{propertyName, direction}`.
#[derive(Debug, Clone)]
pub struct Sort {
    /// Property.
    pub property: String,
    /// Descending.
    pub descending: bool,
}

impl Sort {
    /// From the JSON a client sent.
    pub fn from_json(v: &Value) -> Option<Sort> {
        match v {
            Value::String(s) => Some(match s.strip_prefix('-') {
                Some(p) => Sort {
                    property: p.to_string(),
                    descending: true,
                },
                None => Sort {
                    property: s.clone(),
                    descending: false,
                },
            }),
            Value::Object(m) => Some(Sort {
                property: m.get("propertyName")?.as_str()?.to_string(),
                descending: m.get("direction").and_then(Value::as_str) == Some("DESCENDING"),
            }),
            _ => None,
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How two property values compare: times and numbers as numbers.
fn compare(name: &str, a: &str, b: &str) -> std::cmp::Ordering {
    if (ObjectType::is_modification_time(name) || name == "createdate" || name == "closedate")
        && let (Some(x), Some(y)) = (parse_time(a), parse_time(b))
    {
        return x.cmp(&y);
    }
    // Ordering only (filters, sorts): no arithmetic, so f64 is enough.
    if is_decimal(a)
        && is_decimal(b)
        && let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>())
    {
        return x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
    }
    a.cmp(b)
}

impl Filter {
    /// Whether `obj` passes; `Err` for an unknown operator.
    pub fn matches(&self, obj: &CrmObject) -> Result<bool, String> {
        use std::cmp::Ordering::*;
        let name = self.property_name.as_str();
        let actual = obj.property(name);
        let value = self.value.as_ref().map(text).unwrap_or_default();
        let cmp = |a: &str| compare(name, a, &value);
        Ok(match self.operator.as_str() {
            "HAS_PROPERTY" => actual.is_some_and(|a| !a.is_empty()),
            "NOT_HAS_PROPERTY" => actual.is_none_or(|a| a.is_empty()),
            "EQ" => actual.is_some_and(|a| cmp(&a) == Equal),
            "NEQ" => actual.is_none_or(|a| cmp(&a) != Equal),
            "GT" => actual.is_some_and(|a| cmp(&a) == Greater),
            "GTE" => actual.is_some_and(|a| cmp(&a) != Less),
            "LT" => actual.is_some_and(|a| cmp(&a) == Less),
            "LTE" => actual.is_some_and(|a| cmp(&a) != Greater),
            "BETWEEN" => {
                let high = self.high_value.as_ref().map(text).unwrap_or_default();
                actual.is_some_and(|a| cmp(&a) != Less && compare(name, &a, &high) != Greater)
            }
            "IN" | "NOT_IN" => {
                let values: Vec<String> = self.values.iter().flatten().map(text).collect();
                let found = actual.is_some_and(|a| values.contains(&a));
                found == (self.operator == "IN")
            }
            "CONTAINS_TOKEN" => actual.is_some_and(|a| a.contains(value.trim_matches('*'))),
            "NOT_CONTAINS_TOKEN" => actual.is_none_or(|a| !a.contains(value.trim_matches('*'))),
            other => return Err(format!("Unknown filter operator {other}")),
        })
    }
}

/// Association type ids as HubSpot defines them (from, to) → (id, label).
pub fn association_type(from: ObjectType, to: ObjectType) -> (u32, String) {
    use ObjectType::*;
    let id = match (from, to) {
        (Deals, Companies) => 5,
        (Companies, Deals) => 6,
        (Deals, LineItems) => 19,
        (LineItems, Deals) => 20,
        (Contacts, Companies) => 1,
        (Companies, Contacts) => 2,
        (Deals, Contacts) => 3,
        (Contacts, Deals) => 4,
        _ => 0,
    };
    (id, format!("{}_to_{}", from.singular(), to.singular()))
}

/// Everything one sandbox holds.
#[derive(Debug, Default)]
pub struct Store {
    objects: BTreeMap<ObjectType, BTreeMap<u64, CrmObject>>,
    next: BTreeMap<ObjectType, u64>,
    associations: BTreeSet<(ObjectType, u64, ObjectType, u64)>,
    /// Changes for the webhooks, once the app subscribes to any.
    pub(super) journal: Option<super::webhooks::Journal>,
    /// The live objects in modification order (the incremental search).
    by_modified: ByModified,
}

impl Store {
    /// The live (unarchived) object.
    pub fn get(&self, ty: ObjectType, id: u64) -> Option<&CrmObject> {
        self.objects
            .get(&ty)
            .and_then(|m| m.get(&id))
            .filter(|o| !o.archived)
    }

    /// Live objects of a type, by id.
    pub fn live(&self, ty: ObjectType) -> impl Iterator<Item = &CrmObject> {
        self.objects
            .get(&ty)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|o| !o.archived)
    }

    /// Archived objects of a type, by id (`GET …?archived=true`).
    pub fn archived(&self, ty: ObjectType) -> impl Iterator<Item = &CrmObject> {
        self.objects
            .get(&ty)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|o| o.archived)
    }

    /// The first live object whose `property` is `value` (`idProperty`).
    pub fn find_by(&self, ty: ObjectType, property: &str, value: &str) -> Option<&CrmObject> {
        self.live(ty)
            .find(|o| o.property(property).as_deref() == Some(value))
    }

    /// Create an object at time `now_ms`, after validation.
    pub fn create(
        &mut self,
        ty: ObjectType,
        properties: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<CrmObject, ChangeError> {
        let errors = validate(ty, &properties);
        if !errors.is_empty() {
            return Err(ChangeError::Invalid(errors));
        }
        Ok(self.insert(ty, properties, now_ms, now_ms))
    }

    /// Insert without validation (seeding), with given times.
    pub fn insert(
        &mut self,
        ty: ObjectType,
        mut properties: BTreeMap<String, String>,
        created_ms: i64,
        updated_ms: i64,
    ) -> CrmObject {
        properties.retain(|_, v| !v.is_empty());
        let next = self.next.entry(ty).or_insert_with(|| ty.id_base());
        *next += 1;
        let obj = CrmObject {
            id: *next,
            properties,
            created_ms,
            updated_ms,
            archived: false,
        };
        self.by_modified.add(ty, updated_ms, obj.id);
        self.objects
            .entry(ty)
            .or_default()
            .insert(obj.id, obj.clone());
        if let Some(j) = self.journal.as_mut() {
            j.created(ty, obj.id, created_ms);
        }
        obj
    }

    /// Check a change without applying it.
    pub fn check(
        &self,
        ty: ObjectType,
        id: u64,
        properties: &BTreeMap<String, String>,
    ) -> Result<(), ChangeError> {
        if self.get(ty, id).is_none() {
            return Err(ChangeError::NotFound(id));
        }
        let errors = validate(ty, properties);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ChangeError::Invalid(errors))
        }
    }

    /// Change properties (an empty value clears one) at `now_ms`.
    pub fn update(
        &mut self,
        ty: ObjectType,
        id: u64,
        properties: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<CrmObject, ChangeError> {
        self.check(ty, id, &properties)?;
        self.set_unchecked(ty, id, properties, now_ms)
    }

    /// Change properties without validation (a person's edit in the UI).
    pub fn set_unchecked(
        &mut self,
        ty: ObjectType,
        id: u64,
        properties: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<CrmObject, ChangeError> {
        let obj = self
            .objects
            .get_mut(&ty)
            .and_then(|m| m.get_mut(&id))
            .filter(|o| !o.archived)
            .ok_or(ChangeError::NotFound(id))?;
        for (k, v) in properties {
            if let Some(j) = self.journal.as_mut()
                && obj.properties.get(&k).map_or("", String::as_str) != v
            {
                j.changed(ty, id, &k, &v, now_ms.max(obj.updated_ms));
            }
            if v.is_empty() {
                obj.properties.remove(&k);
            } else {
                obj.properties.insert(k, v);
            }
        }
        let before = obj.updated_ms;
        obj.updated_ms = now_ms.max(obj.updated_ms);
        self.by_modified.remove(ty, before, id);
        self.by_modified.add(ty, obj.updated_ms, id);
        Ok(obj.clone())
    }

    /// Archive an object; false when there is none.
    pub fn archive(&mut self, ty: ObjectType, id: u64, now_ms: i64) -> bool {
        match self.objects.get_mut(&ty).and_then(|m| m.get_mut(&id)) {
            Some(o) if !o.archived => {
                o.archived = true;
                self.by_modified.remove(ty, o.updated_ms, id);
                o.updated_ms = now_ms.max(o.updated_ms);
                if let Some(j) = self.journal.as_mut() {
                    j.archived(ty, id, o.updated_ms);
                }
                true
            }
            _ => false,
        }
    }

    /// Associate two objects (both directions).
    pub fn associate(&mut self, a: ObjectType, a_id: u64, b: ObjectType, b_id: u64) {
        self.associations.insert((a, a_id, b, b_id));
        self.associations.insert((b, b_id, a, a_id));
    }

    /// Ids of `to` objects associated with `from`/`id` (live ones).
    pub fn associated(&self, from: ObjectType, id: u64, to: ObjectType) -> Vec<u64> {
        self.associations
            .range((from, id, to, 0)..=(from, id, to, u64::MAX))
            .map(|&(_, _, _, other)| other)
            .filter(|&other| self.get(to, other).is_some())
            .collect()
    }

    /// Live objects of `ty` passing any of `groups` (filters in a group all
    /// apply), sorted.
    pub fn search(
        &self,
        ty: ObjectType,
        groups: &[Vec<Filter>],
        sorts: &[Sort],
    ) -> Result<Vec<&CrmObject>, String> {
        let mut found = Vec::new();
        for obj in self.live(ty) {
            let mut any = groups.is_empty();
            for group in groups {
                let mut all = true;
                for f in group {
                    all &= f.matches(obj)?;
                }
                any |= all;
            }
            if any {
                found.push(obj);
            }
        }
        found.sort_by(|a, b| {
            for s in sorts {
                let (x, y) = (
                    a.property(&s.property).unwrap_or_default(),
                    b.property(&s.property).unwrap_or_default(),
                );
                let o = compare(&s.property, &x, &y);
                let o = if s.descending { o.reverse() } else { o };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            a.id.cmp(&b.id)
        });
        Ok(found)
    }

    /// One page of a search: how many objects match in all, and the
    /// `limit` of them after the first `after`. The incremental read (a
    /// sort on the modification time, at most a `GT`/`GTE` on it) is
    /// answered from the modification index, in the same order.
    pub fn search_page(
        &self,
        ty: ObjectType,
        groups: &[Vec<Filter>],
        sorts: &[Sort],
        after: usize,
        limit: usize,
    ) -> Result<(usize, Vec<&CrmObject>), String> {
        if let Some(bound) = indexed(groups, sorts) {
            let found = self.by_modified.from(ty, bound);
            let page = found
                .iter()
                .skip(after)
                .take(limit)
                .filter_map(|&(_, id)| self.get(ty, id))
                .collect();
            return Ok((found.len(), page));
        }
        let found = self.search(ty, groups, sorts)?;
        let total = found.len();
        Ok((total, found.into_iter().skip(after).take(limit).collect()))
    }

    /// An object as `SimplePublicObject` with the requested properties (the
    /// type's defaults when none), plus the system properties.
    pub fn render(ty: ObjectType, obj: &CrmObject, requested: &[String]) -> Value {
        let mut props = serde_json::Map::new();
        let names: Vec<&str> = if requested.is_empty() {
            ty.defaults().to_vec()
        } else {
            requested.iter().map(String::as_str).collect()
        };
        for name in names.into_iter().chain(ty.system().iter().copied()) {
            if let Some(v) = obj.property(name) {
                props.insert(name.to_string(), Value::String(v));
            }
        }
        let mut out = json!({
            "id": obj.id.to_string(),
            "properties": props,
            "createdAt": iso(obj.created_ms),
            "updatedAt": iso(obj.updated_ms),
            "archived": obj.archived,
        });
        if obj.archived {
            out["archivedAt"] = Value::String(iso(obj.updated_ms));
        }
        out
    }

    /// An object as a write answers it: with every property it has.
    pub fn render_written(ty: ObjectType, obj: &CrmObject) -> Value {
        let all: Vec<String> = obj.properties.keys().cloned().collect();
        Store::render(ty, obj, &all)
    }

    /// How many live objects of a type.
    pub fn count(&self, ty: ObjectType) -> usize {
        self.live(ty).count()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn validation_names_each_bad_property() {
        let e = validate(
            ObjectType::Deals,
            &props(&[
                ("amount", "12,5"),
                ("dealstage", "won"),
                ("nope", "x"),
                ("dealname", "ok"),
            ]),
        );
        let codes: Vec<_> = e.iter().map(|e| (e.name.as_str(), e.code)).collect();
        assert_eq!(
            codes,
            [
                ("amount", "INVALID_DECIMAL"),
                ("dealstage", "INVALID_OPTION"),
                ("nope", "PROPERTY_DOESNT_EXIST")
            ]
        );
        assert!(validate(ObjectType::Contacts, &props(&[("email", "a@b.test")])).is_empty());
        assert_eq!(
            validate(ObjectType::Contacts, &props(&[("email", "a@b")]))[0].code,
            "INVALID_EMAIL"
        );
        assert!(is_decimal("-12.50") && !is_decimal("1.") && !is_decimal("1e3"));
    }

    #[test]
    fn iso_is_chronos_format() {
        let chrono_iso = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
                .unwrap_or_default()
        };
        let mut ms = -62_135_596_800_000i64; // 0001-01-01
        while ms < 253_402_300_799_999 {
            assert_eq!(iso(ms), chrono_iso(ms), "{ms}");
            ms += 86_399_999_997; // a day short of a thousand, odd times
        }
        for ms in [0, 951_782_400_000, 1_767_225_599_999, 1_764_892_800_123, -1] {
            assert_eq!(iso(ms), chrono_iso(ms), "{ms}");
        }
    }

    #[test]
    fn search_filters_on_modification_time_and_sorts_ascending() {
        let mut s = Store::default();
        let a = s.insert(ObjectType::Contacts, props(&[("email", "a@x.test")]), 1, 30);
        let b = s.insert(ObjectType::Contacts, props(&[("email", "b@x.test")]), 1, 20);
        s.insert(ObjectType::Contacts, props(&[("email", "c@x.test")]), 1, 10);
        let f = Filter {
            property_name: "hs_lastmodifieddate".into(),
            operator: "GTE".into(),
            value: Some(json!("20")),
            ..Filter::default()
        };
        let sort = Sort::from_json(&json!("hs_lastmodifieddate")).unwrap();
        let found = s.search(ObjectType::Contacts, &[vec![f]], &[sort]).unwrap();
        let ids: Vec<u64> = found.iter().map(|o| o.id).collect();
        assert_eq!(ids, [b.id, a.id]);
    }
}

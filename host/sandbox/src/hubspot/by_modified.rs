//! The live objects of each type in modification order, so that the search
//! a connector pages through to read changes (`hs_lastmodifieddate GTE t`,
//! sorted ascending, paged with `after`) answers a page without scanning and
//! sorting every object: at a million contacts the scan made the sandbox,
//! not the connector, the bottleneck of a read (each of the 10 000 pages
//! sorted all of them). Any other search still takes the general path.

use std::collections::BTreeMap;

use serde_json::Value;

use super::store::{Filter, ObjectType, Sort, parse_time};

/// Live objects by type as `(modified ms, id)`, sorted: the order the
/// general search gives for a sort on the modification time (ties by id).
#[derive(Debug, Default)]
pub(crate) struct ByModified(BTreeMap<ObjectType, Vec<(i64, u64)>>);

impl ByModified {
    /// A live object now modified at `at`. Seeding and creates come in
    /// time order, so this is usually a push.
    pub(crate) fn add(&mut self, ty: ObjectType, at: i64, id: u64) {
        let v = self.0.entry(ty).or_default();
        let key = (at, id);
        let i = v.partition_point(|e| *e < key);
        if v.get(i) != Some(&key) {
            v.insert(i, key);
        }
    }

    /// An object no longer live at `at` (archived, or moving to a new time).
    pub(crate) fn remove(&mut self, ty: ObjectType, at: i64, id: u64) {
        if let Some(v) = self.0.get_mut(&ty)
            && let Ok(i) = v.binary_search(&(at, id))
        {
            v.remove(i);
        }
    }

    /// The live objects of `ty` from `bound` on, in order.
    pub(crate) fn from(&self, ty: ObjectType, bound: Bound) -> &[(i64, u64)] {
        let v = self.0.get(&ty).map(Vec::as_slice).unwrap_or_default();
        let start = match bound {
            Bound::All => 0,
            Bound::AtOrAfter(t) => v.partition_point(|e| e.0 < t),
            Bound::After(t) => v.partition_point(|e| e.0 <= t),
        };
        v.get(start..).unwrap_or_default()
    }
}

/// Where an indexed search starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// Every live object.
    All,
    /// Modified at or after (`GTE`).
    AtOrAfter(i64),
    /// Modified strictly after (`GT`).
    After(i64),
}

/// The bound when this search is one the index answers exactly as the
/// general path would: sorted only by the modification time ascending, and
/// no filter or a single `GT`/`GTE` on it with a time value.
pub(crate) fn indexed(groups: &[Vec<Filter>], sorts: &[Sort]) -> Option<Bound> {
    let [sort] = sorts else { return None };
    if sort.descending || !ObjectType::is_modification_time(&sort.property) {
        return None;
    }
    match groups {
        [] => Some(Bound::All),
        [group] => {
            let [f] = group.as_slice() else { return None };
            if !ObjectType::is_modification_time(&f.property_name) {
                return None;
            }
            let t = match f.value.as_ref()? {
                Value::String(s) => parse_time(s)?,
                Value::Number(n) => parse_time(&n.to_string())?,
                _ => return None,
            };
            match f.operator.as_str() {
                "GTE" => Some(Bound::AtOrAfter(t)),
                "GT" => Some(Bound::After(t)),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::super::store::{Filter, ObjectType, Sort, Store};

    /// The index answers every page as the general search does, after
    /// edits (which move an object) and archives (which hide it).
    #[test]
    fn indexed_pages_are_the_general_search_pages() {
        let mut s = Store::default();
        let ty = ObjectType::Contacts;
        let mut ids = Vec::new();
        for i in 0..60i64 {
            // Ties on purpose: every third shares its predecessor's time.
            let at = 1_000 + i - i64::from(i % 3 == 2);
            let props = BTreeMap::from([("email".to_string(), format!("c{i}@x.test"))]);
            ids.push(s.insert(ty, props, 1, at).id);
        }
        let edit = BTreeMap::from([("city".to_string(), "Lyon".to_string())]);
        s.set_unchecked(ty, ids[3], edit.clone(), 1_030).unwrap();
        s.set_unchecked(ty, ids[40], edit, 5_000).unwrap();
        assert!(s.archive(ty, ids[10], 1_010));
        assert!(s.archive(ty, ids[50], 9_000));
        let sorts = [Sort::from_json(&json!("hs_lastmodifieddate")).unwrap()];
        let filter = |op: &str, v: serde_json::Value| {
            vec![vec![Filter {
                property_name: "hs_lastmodifieddate".into(),
                operator: op.into(),
                value: Some(v),
                ..Filter::default()
            }]]
        };
        for groups in [
            vec![],
            filter("GTE", json!("1030")),
            filter("GT", json!("1030")),
            filter("GTE", json!(1_020)),
            filter("GTE", json!("1970-01-01T00:00:01.025Z")),
            filter("GT", json!("9999")),
        ] {
            assert!(super::indexed(&groups, &sorts).is_some());
            let all: Vec<u64> = s
                .search(ty, &groups, &sorts)
                .unwrap()
                .iter()
                .map(|o| o.id)
                .collect();
            for (after, limit) in [(0, 7), (7, 7), (0, 100), (50, 10)] {
                let (total, page) = s.search_page(ty, &groups, &sorts, after, limit).unwrap();
                let page: Vec<u64> = page.iter().map(|o| o.id).collect();
                let want: Vec<u64> = all.iter().copied().skip(after).take(limit).collect();
                assert_eq!((total, page), (all.len(), want), "{groups:?} {after}");
            }
        }
        // A descending sort or another filter takes the general path.
        let desc = [Sort::from_json(&json!("-hs_lastmodifieddate")).unwrap()];
        assert!(super::indexed(&[], &desc).is_none());
        assert!(super::indexed(&filter("LT", json!("1")), &sorts).is_none());
    }
}

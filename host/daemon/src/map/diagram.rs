//! Where the map's boxes and arrows go: systems as framed columns of
//! connection boxes, pipelines as curved arrows between them. Computed once
//! here so the HTML page and the console draw the very same picture (the
//! console only paints what this says).
//!
//! Columns: with three or more systems the busiest one sits in the middle,
//! systems that mostly send on its left and those that mostly receive on
//! its right, so most arrows join neighbouring columns; with fewer, senders
//! come first. Arrows leave and enter boxes at their own slots on a side,
//! so two pipelines between the same connections never overlap.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{PipelineMap, System};

const MARGIN: i32 = 20;
const NODE_W: i32 = 230;
const NODE_MIN_H: i32 = 66;
const SLOT: i32 = 20;
const COLUMN_GAP: i32 = 330;
const FRAME_PAD: i32 = 10;
const FRAME_TITLE: i32 = 24;
const NODE_GAP: i32 = 12;
const SYSTEM_GAP: i32 = 24;
/// How far a same-column arrow swings out.
const LOOP: i32 = 90;

/// The whole picture.
#[derive(Debug, Clone, Serialize)]
pub struct Diagram {
    /// Width in pixels.
    pub width: i32,
    /// Height in pixels.
    pub height: i32,
    /// A frame per system.
    pub systems: Vec<DiagramSystem>,
    /// A box per connection.
    pub nodes: Vec<DiagramNode>,
    /// An arrow per pipeline.
    pub edges: Vec<DiagramEdge>,
}

/// The frame around one system's connections.
#[derive(Debug, Clone, Serialize)]
pub struct DiagramSystem {
    /// Plugin id, its title.
    pub plugin: String,
    /// Left.
    pub x: i32,
    /// Top.
    pub y: i32,
    /// Width.
    pub w: i32,
    /// Height.
    pub h: i32,
}

/// One connection's box.
#[derive(Debug, Clone, Serialize)]
pub struct DiagramNode {
    /// Connection name (its title).
    pub connection: String,
    /// Second line: environment, plugin and version.
    pub subtitle: String,
    /// Its health status (`ok`, `failing`, `unknown`).
    pub health: String,
    /// Left.
    pub x: i32,
    /// Top.
    pub y: i32,
    /// Width.
    pub w: i32,
    /// Height.
    pub h: i32,
}

/// One pipeline's arrow.
#[derive(Debug, Clone, Serialize)]
pub struct DiagramEdge {
    /// Pipeline name (its label).
    pub pipeline: String,
    /// Source connection.
    pub from: String,
    /// Destination connection.
    pub to: String,
    /// The pipeline's health status: the arrow's colour.
    pub health: String,
    /// SVG path data of the curve.
    pub path: String,
    /// SVG polygon points of the arrowhead.
    pub head: String,
    /// Where the label is centred.
    pub label_x: i32,
    /// Baseline of the label.
    pub label_y: i32,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Side {
    Left,
    Right,
}

impl Diagram {
    /// Lay the systems and pipelines out.
    pub fn lay_out(systems: &[System], pipelines: &[PipelineMap]) -> Diagram {
        let system_of: HashMap<&str, &str> = systems
            .iter()
            .flat_map(|s| {
                s.connections
                    .iter()
                    .map(move |c| (c.name.as_str(), s.plugin.as_str()))
            })
            .collect();
        let columns = columns(systems, pipelines, &system_of);
        let column_count = columns.values().copied().max().map_or(1, |m| m + 1);
        let column_of_conn = |c: &str| -> i32 {
            system_of
                .get(c)
                .and_then(|s| columns.get(*s))
                .copied()
                .unwrap_or(0)
        };
        // Which side of which box each arrow uses, in pipeline order.
        let ends: Vec<(Side, Side)> = pipelines
            .iter()
            .map(|p| {
                let (a, b) = (
                    column_of_conn(&p.source.connection),
                    column_of_conn(&p.destination.connection),
                );
                match a.cmp(&b) {
                    std::cmp::Ordering::Less => (Side::Right, Side::Left),
                    std::cmp::Ordering::Greater => (Side::Left, Side::Right),
                    // Same column: swing out on the outer side.
                    std::cmp::Ordering::Equal if a == 0 && column_count > 1 => {
                        (Side::Left, Side::Left)
                    }
                    std::cmp::Ordering::Equal => (Side::Right, Side::Right),
                }
            })
            .collect();
        let mut slots: BTreeMap<(String, Side), usize> = BTreeMap::new();
        for (p, (from, to)) in pipelines.iter().zip(&ends) {
            *slots
                .entry((p.source.connection.clone(), *from))
                .or_default() += 1;
            *slots
                .entry((p.destination.connection.clone(), *to))
                .or_default() += 1;
        }
        let height_of = |c: &str| -> i32 {
            let most = [Side::Left, Side::Right]
                .iter()
                .map(|s| slots.get(&(c.to_string(), *s)).copied().unwrap_or(0))
                .max()
                .unwrap_or(0) as i32;
            NODE_MIN_H.max(SLOT * (most + 1))
        };
        let mut frames = Vec::new();
        let mut nodes = Vec::new();
        let mut bottom = vec![MARGIN; column_count as usize];
        for s in systems {
            let col = columns.get(s.plugin.as_str()).copied().unwrap_or(0);
            let x = MARGIN + LOOP + col * (NODE_W + 2 * FRAME_PAD + COLUMN_GAP);
            let top = bottom[col as usize];
            let mut y = top + FRAME_TITLE;
            for c in &s.connections {
                let h = height_of(&c.name);
                let version = c.version.as_deref().unwrap_or("?");
                nodes.push(DiagramNode {
                    connection: c.name.clone(),
                    subtitle: format!("{} · {} {version}", c.environment, c.plugin),
                    health: c.health.status.to_string(),
                    x: x + FRAME_PAD,
                    y,
                    w: NODE_W,
                    h,
                });
                y += h + NODE_GAP;
            }
            let h = y - top - NODE_GAP + FRAME_PAD;
            frames.push(DiagramSystem {
                plugin: s.plugin.clone(),
                x,
                y: top,
                w: NODE_W + 2 * FRAME_PAD,
                h,
            });
            bottom[col as usize] = top + h + SYSTEM_GAP;
        }
        let node: HashMap<&str, &DiagramNode> =
            nodes.iter().map(|n| (n.connection.as_str(), n)).collect();
        let mut taken: BTreeMap<(String, Side), usize> = BTreeMap::new();
        let mut port = |c: &str, side: Side| -> Option<(i32, i32)> {
            let n = node.get(c)?;
            let key = (c.to_string(), side);
            let count = slots.get(&key).copied().unwrap_or(1) as i32;
            let slot = taken.entry(key).or_default();
            *slot += 1;
            let y = n.y + n.h * (*slot as i32) / (count + 1);
            let x = match side {
                Side::Left => n.x,
                Side::Right => n.x + n.w,
            };
            Some((x, y))
        };
        let mut edges = Vec::new();
        for (p, (from, to)) in pipelines.iter().zip(&ends) {
            // A connection the map does not know (removed since) has no box.
            let (Some(a), Some(b)) = (
                port(&p.source.connection, *from),
                port(&p.destination.connection, *to),
            ) else {
                continue;
            };
            edges.push(edge(p, a, b, *from, *to));
        }
        let width = MARGIN * 2
            + 2 * LOOP
            + column_count * (NODE_W + 2 * FRAME_PAD)
            + (column_count - 1) * COLUMN_GAP;
        let height = bottom.iter().copied().max().unwrap_or(MARGIN) + MARGIN;
        Diagram {
            width,
            height: height.max(120),
            systems: frames,
            nodes,
            edges,
        }
    }
}

/// Each system's column.
fn columns<'a>(
    systems: &'a [System],
    pipelines: &[PipelineMap],
    system_of: &HashMap<&str, &str>,
) -> HashMap<&'a str, i32> {
    // Net flow (out − in) and pipelines touching, per system.
    let mut net: HashMap<&str, i32> = HashMap::new();
    let mut touching: HashMap<&str, i32> = HashMap::new();
    for p in pipelines {
        let (Some(a), Some(b)) = (
            system_of.get(p.source.connection.as_str()),
            system_of.get(p.destination.connection.as_str()),
        ) else {
            continue;
        };
        *net.entry(a).or_default() += 1;
        *net.entry(b).or_default() -= 1;
        *touching.entry(a).or_default() += 1;
        *touching.entry(b).or_default() += 1;
    }
    let mut out = HashMap::new();
    if systems.len() <= 2 {
        let mut order: Vec<&System> = systems.iter().collect();
        order.sort_by_key(|s| -net.get(s.plugin.as_str()).copied().unwrap_or(0));
        for (i, s) in order.into_iter().enumerate() {
            out.insert(s.plugin.as_str(), i as i32);
        }
        return out;
    }
    let hub = systems
        .iter()
        .max_by_key(|s| touching.get(s.plugin.as_str()).copied().unwrap_or(0))
        .map(|s| s.plugin.as_str())
        .unwrap_or_default();
    for s in systems {
        let col = if s.plugin == hub {
            1
        } else if net.get(s.plugin.as_str()).copied().unwrap_or(0) >= 0 {
            0
        } else {
            2
        };
        out.insert(s.plugin.as_str(), col);
    }
    // Nobody left of the hub: close the gap.
    if !out.values().any(|c| *c == 0) {
        for c in out.values_mut() {
            *c -= 1;
        }
    }
    out
}

fn edge(p: &PipelineMap, a: (i32, i32), b: (i32, i32), from: Side, to: Side) -> DiagramEdge {
    let out = |side: Side| match side {
        Side::Left => -1,
        Side::Right => 1,
    };
    let reach = if from == to {
        LOOP
    } else {
        ((b.0 - a.0).abs() / 2).max(40)
    };
    let c1 = (a.0 + out(from) * reach, a.1);
    let c2 = (b.0 + out(to) * reach, b.1);
    // The point at t = ½ of the cubic curve.
    let mid = (
        (a.0 + 3 * c1.0 + 3 * c2.0 + b.0) / 8,
        (a.1 + 3 * c1.1 + 3 * c2.1 + b.1) / 8,
    );
    // The arrowhead points into the box, along the curve's last tangent
    // (horizontal: the last control point is level with the end).
    let dir = -out(to);
    let tip = b;
    let base = tip.0 - dir * 10;
    let head = format!(
        "{},{} {},{} {},{}",
        tip.0,
        tip.1,
        base,
        tip.1 - 5,
        base,
        tip.1 + 5
    );
    // The curve stops at the arrowhead's base.
    let path = format!(
        "M {} {} C {} {}, {} {}, {} {}",
        a.0, a.1, c1.0, c1.1, c2.0, c2.1, base, b.1
    );
    DiagramEdge {
        pipeline: p.name.clone(),
        from: p.source.connection.clone(),
        to: p.destination.connection.clone(),
        health: p.health.status.to_string(),
        path,
        head,
        label_x: mid.0,
        label_y: mid.1 - 4,
    }
}

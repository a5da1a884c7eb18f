//! Listings by map cell, so a radius search visits the cells its circle
//! overlaps instead of every listing. The exact distance still decides;
//! the grid only skips listings that cannot be near.

use std::collections::HashMap;

use crate::geo::EARTH_RADIUS_KM;

/// Cell size in degrees (about 1.1 km north–south, 0.7 km east–west at
/// Paris): a city-sized radius spans tens to a few hundred cells.
const CELL: f64 = 0.01;

type Key = (i32, i32);

/// The cell of a point; also the order slots are first assigned in, so a
/// cell's listings sit together in memory.
pub fn key(lat: f64, lng: f64) -> Key {
    ((lat / CELL).floor() as i32, (lng / CELL).floor() as i32)
}

#[derive(Default)]
pub struct Grid {
    /// Each cell's slots, ascending.
    cells: HashMap<Key, Vec<u32>>,
}

impl Grid {
    pub fn insert(&mut self, slot: u32, (lat, lng): (f64, f64)) {
        let slots = self.cells.entry(key(lat, lng)).or_default();
        let at = slots.partition_point(|&s| s < slot);
        if slots.get(at) != Some(&slot) {
            slots.insert(at, slot);
        }
    }

    pub fn remove(&mut self, slot: u32, (lat, lng): (f64, f64)) {
        let cell = key(lat, lng);
        if let Some(slots) = self.cells.get_mut(&cell) {
            if let Ok(at) = slots.binary_search(&slot) {
                slots.remove(at);
            }
            if slots.is_empty() {
                self.cells.remove(&cell);
            }
        }
    }

    /// The slots of every cell that can hold a point within `radius_km` of
    /// `(lat, lng)`, or `None` when scanning every listing is the better
    /// plan: the circle's box spans more cells than are occupied, or it
    /// reaches a pole or the antimeridian.
    pub fn near(
        &self,
        (lat, lng): (f64, f64),
        radius_km: f64,
    ) -> Option<impl Iterator<Item = u32> + '_> {
        // A little slack: the box must contain the circle.
        let dlat = (radius_km / EARTH_RADIUS_KM).to_degrees() * 1.001 + 1e-9;
        // The circle is widest on its poleward side.
        let widest = (lat.abs() + dlat).min(90.0).to_radians().cos();
        if widest < 0.01 {
            return None;
        }
        let dlng = dlat / widest;
        if lng - dlng < -180.0 || lng + dlng > 180.0 {
            return None;
        }
        let (y0, x0) = key(lat - dlat, lng - dlng);
        let (y1, x1) = key(lat + dlat, lng + dlng);
        let spanned = (i64::from(y1 - y0) + 1) * (i64::from(x1 - x0) + 1);
        if spanned > self.cells.len() as i64 {
            return None;
        }
        Some(
            (y0..=y1)
                .flat_map(move |y| (x0..=x1).filter_map(move |x| self.cells.get(&(y, x))))
                .flatten()
                .copied(),
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::geo::distance_km;

    proptest! {
        /// Every listing within the radius is among the slots returned.
        #[test]
        fn near_holds_every_point_in_the_radius(
            points in proptest::collection::vec((48.0f64..49.6, 1.5f64..3.2), 1..300),
            lat in 48.0f64..49.6, lng in 1.5f64..3.2, radius in 0.05f64..40.0,
        ) {
            let mut grid = Grid::default();
            for (slot, &at) in points.iter().enumerate() {
                grid.insert(slot as u32, at);
            }
            if let Some(near) = grid.near((lat, lng), radius).map(Vec::from_iter) {
                for (slot, &at) in points.iter().enumerate() {
                    if distance_km((lat, lng), at) <= radius {
                        prop_assert!(near.contains(&(slot as u32)), "{at:?} missed");
                    }
                }
            }
        }
    }

    #[test]
    fn moved_and_removed_listings_leave_their_cell() {
        let mut grid = Grid::default();
        // Listings far away, so that a small radius is worth a lookup.
        for slot in 100..200 {
            grid.insert(slot, (10.0 + f64::from(slot) * 0.01, 10.0));
        }
        grid.insert(1, (48.85, 2.35));
        grid.insert(2, (48.85, 2.35));
        grid.insert(3, (48.95, 2.35));
        grid.remove(1, (48.85, 2.35));
        assert_eq!(
            grid.near((48.85, 2.35), 0.5).map(Vec::from_iter),
            Some(vec![2])
        );
        grid.remove(2, (48.85, 2.35));
        assert_eq!(grid.cells.len(), 101, "empty cells are dropped");
        // A radius spanning more cells than are occupied: scan instead.
        assert!(grid.near((48.85, 2.35), 50.0).is_none());
    }
}

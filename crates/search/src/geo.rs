//! Distances and the grid cells that narrow a radius query inside the
//! index. A listing is indexed under one cell per level; a query takes the
//! finest level whose cells cover its bounding box in a handful of terms,
//! and the exact great-circle distance then decides.

/// Mean Earth radius (IUGG), the same sphere PostGIS's `use_spheroid =
/// false` distances use.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Cell sizes in degrees, finest first (~0.5 km to ~570 km at the equator).
const LEVELS: [f64; 6] = [0.005, 0.02, 0.08, 0.32, 1.28, 5.12];

/// At most this many cells per query (a 6 × 6 block).
const MAX_CELLS: i64 = 36;

/// Great-circle (haversine) distance in kilometres.
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lng1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lng2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lng2 - lng1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// A point on the unit sphere. The straight-line (chord) distance between
/// two of them grows with their great-circle distance, so a radius test or
/// a distance sort compares squared chords: three multiplications per
/// listing instead of the haversine's trigonometry, with the same answer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UnitVector([f64; 3]);

impl UnitVector {
    /// The centre of the sphere: a placeholder for "no location".
    pub const ORIGIN: UnitVector = UnitVector([0.0; 3]);

    pub fn new(lat: f64, lng: f64) -> Self {
        let (lat, lng) = (lat.to_radians(), lng.to_radians());
        Self([lat.cos() * lng.cos(), lat.cos() * lng.sin(), lat.sin()])
    }

    /// The squared chord to `other`, from 0 (same point) to 4 (antipodes).
    #[inline]
    pub fn chord2(self, other: Self) -> f64 {
        let [x, y, z] = self.0;
        let [a, b, c] = other.0;
        (x - a) * (x - a) + (y - b) * (y - b) + (z - c) * (z - c)
    }
}

/// The great-circle distance in km of a squared chord (the haversine's
/// `2R·asin(√h)`, since the chord is `2·sin(θ/2)` = `2√h`).
pub fn chord2_km(chord2: f64) -> f64 {
    2.0 * EARTH_RADIUS_KM * (chord2.max(0.0).sqrt() / 2.0).min(1.0).asin()
}

/// The squared chord of a great-circle distance in km (the inverse of
/// [`chord2_km`]; beyond half the globe, every point).
pub fn km_chord2(km: f64) -> f64 {
    let half_angle = (km / (2.0 * EARTH_RADIUS_KM)).min(std::f64::consts::FRAC_PI_2);
    let chord = 2.0 * half_angle.sin();
    chord * chord
}

fn cell(level: usize, lat: f64, lng: f64) -> String {
    let size = LEVELS[level];
    format!(
        "{level}:{}:{}",
        (lat / size).floor() as i64,
        (lng / size).floor() as i64
    )
}

/// The terms a listing at `(lat, lng)` is indexed under.
pub fn cells(lat: f64, lng: f64) -> Vec<String> {
    (0..LEVELS.len())
        .map(|level| cell(level, lat, lng))
        .collect()
}

/// Terms whose union contains every point within `radius_km` of the
/// centre, or `None` when no level covers it in few enough cells (a huge
/// radius, a pole, the antimeridian): the exact filter alone decides then.
pub fn covering(lat: f64, lng: f64, radius_km: f64) -> Option<Vec<String>> {
    let dlat = (radius_km / EARTH_RADIUS_KM).to_degrees();
    let cos = lat.to_radians().cos();
    if cos < 0.01 {
        return None;
    }
    let dlng = dlat / cos;
    let (south, north) = (lat - dlat, lat + dlat);
    let (west, east) = (lng - dlng, lng + dlng);
    if south < -90.0 || north > 90.0 || west < -180.0 || east > 180.0 {
        return None;
    }
    for (level, size) in LEVELS.iter().enumerate() {
        let (y0, y1) = ((south / size).floor() as i64, (north / size).floor() as i64);
        let (x0, x1) = ((west / size).floor() as i64, (east / size).floor() as i64);
        if (y1 - y0 + 1) * (x1 - x0 + 1) <= MAX_CELLS {
            let mut out = Vec::new();
            for y in y0..=y1 {
                for x in x0..=x1 {
                    out.push(format!("{level}:{y}:{x}"));
                }
            }
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_distances() {
        // Paris (Notre-Dame) to London (Charing Cross): ~343.5 km.
        let d = distance_km((48.8530, 2.3499), (51.5080, -0.1247));
        assert!((d - 343.5).abs() < 1.0, "{d}");
        assert_eq!(distance_km((10.0, 10.0), (10.0, 10.0)), 0.0);
    }

    proptest! {
        /// The chord path gives the haversine's distance, and its order.
        #[test]
        fn chords_measure_like_the_haversine(
            lat in -80.0f64..80.0, lng in -179.0f64..179.0,
            dlat in -0.5f64..0.5, dlng in -0.5f64..0.5, radius in 0.01f64..100.0,
        ) {
            let (a, b) = ((lat, lng), (lat + dlat, lng + dlng));
            let exact = distance_km(a, b);
            let chord2 = UnitVector::new(a.0, a.1).chord2(UnitVector::new(b.0, b.1));
            prop_assert!((chord2_km(chord2) - exact).abs() < 1e-6, "{} vs {exact}", chord2_km(chord2));
            prop_assert!((chord2_km(km_chord2(radius)) - radius).abs() < 1e-6);
            // Away from the boundary (a micrometre), both tests agree.
            if (exact - radius).abs() > 1e-9 {
                prop_assert_eq!(chord2 <= km_chord2(radius), exact <= radius);
            }
        }

        /// Every point within the radius lies in one of the covering cells.
        #[test]
        fn covering_contains_every_point_in_the_radius(
            lat in -60.0f64..60.0, lng in -170.0f64..170.0,
            radius in 0.1f64..50.0, bearing in 0.0f64..360.0, fraction in 0.0f64..1.0,
        ) {
            let Some(terms) = covering(lat, lng, radius) else { return Ok(()) };
            // Walk `fraction * radius` from the centre along `bearing`.
            let d = fraction * radius / EARTH_RADIUS_KM;
            let (phi, lambda, theta) = (lat.to_radians(), lng.to_radians(), bearing.to_radians());
            let phi2 = (phi.sin() * d.cos() + phi.cos() * d.sin() * theta.cos()).asin();
            let lambda2 = lambda
                + (theta.sin() * d.sin() * phi.cos()).atan2(d.cos() - phi.sin() * phi2.sin());
            let point = (phi2.to_degrees(), lambda2.to_degrees());
            prop_assert!(distance_km((lat, lng), point) <= radius + 1e-6);
            let indexed = cells(point.0, point.1);
            prop_assert!(indexed.iter().any(|c| terms.contains(c)), "{point:?} not covered");
        }
    }
}

//! The generated marketplace of issue 7's search benchmark: categories with
//! realistic vocabularies (what gets rented in a city), a city-sized area
//! (Paris and its inner suburbs) with named neighbourhoods, and the words
//! that queries are made of. Everything is drawn from [`Rng`], so the same
//! seed gives the same listings and the same queries.

use uuid::Uuid;

use crate::ledger::Rng;

/// A uniform float in `[0, 1)`.
pub fn unit(rng: &mut Rng) -> f64 {
    (rng.next() >> 11) as f64 / (1u64 << 53) as f64
}

/// True with probability `p`.
pub fn chance(rng: &mut Rng, p: f64) -> bool {
    unit(rng) < p
}

/// One element, uniformly.
pub fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[(rng.next() % items.len() as u64) as usize]
}

/// One of a list of words, uniformly.
pub fn pick_str(rng: &mut Rng, items: &[&'static str]) -> &'static str {
    let word: &&'static str = pick(rng, items);
    word
}

/// A standard normal draw (Box–Muller).
pub fn gauss(rng: &mut Rng) -> f64 {
    let u1 = unit(rng).max(f64::MIN_POSITIVE);
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A UUID (version 4 layout) from the generator: deterministic ids.
pub fn uuid(rng: &mut Rng) -> Uuid {
    let bytes = (u128::from(rng.next()) << 64 | u128::from(rng.next())).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A listing type, as stored in `listings.type` and `categories.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Item,
    Service,
    Property,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Item => "item",
            Self::Service => "service",
            Self::Property => "property",
        }
    }
}

/// A seeded category (migrations/20261122000003_listings.sql) and what its
/// listings are made of.
pub struct Category {
    pub slug: &'static str,
    pub id: Uuid,
    pub kind: Kind,
    /// Share of the listings, relative to the other categories' weights.
    pub weight: u32,
    /// Items: `Brand|Model|noun`; services and properties: the noun
    /// (`wedding photographer`, `2-bedroom apartment`).
    pub products: &'static [&'static str],
    /// Title openers (`Full-frame`, `Sunny`).
    pub adjectives: &'static [&'static str],
    /// Title endings (`with 24-105 mm lens`, `with balcony`).
    pub extras: &'static [&'static str],
    /// Description sentences.
    pub uses: &'static [&'static str],
    /// Items: what comes with it (`included_items`); properties: amenities.
    pub included: &'static [&'static str],
    /// Daily price range in cents (services: hourly).
    pub price: (i64, i64),
}

const fn category_id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190c000_0000_7000_8000_000000000000 | n)
}

/// The categories listings are generated in: every leaf, plus the three
/// item categories that have children (a camera body is a `cameras`
/// listing, a lens a `lenses` one). The three roots get none.
pub static CATEGORIES: &[Category] = &[
    Category {
        slug: "cameras",
        id: category_id(0x101),
        kind: Kind::Item,
        weight: 10,
        products: &[
            "Canon|EOS R5|mirrorless camera",
            "Canon|EOS R6|mirrorless camera",
            "Canon|EOS R8|mirrorless camera",
            "Canon|EOS 90D|DSLR camera",
            "Canon|EOS 5D Mark IV|DSLR camera",
            "Sony|A7 IV|mirrorless camera",
            "Sony|A7S III|video camera",
            "Sony|A7R V|mirrorless camera",
            "Sony|ZV-E10|vlogging camera",
            "Sony|A6400|mirrorless camera",
            "Nikon|Z6 II|mirrorless camera",
            "Nikon|Z8|mirrorless camera",
            "Nikon|D850|DSLR camera",
            "Nikon|Z fc|retro camera",
            "Fujifilm|X-T5|mirrorless camera",
            "Fujifilm|X100V|compact camera",
            "Fujifilm|Instax Mini 12|instant camera",
            "Panasonic|Lumix GH6|video camera",
            "Panasonic|Lumix S5 II|mirrorless camera",
            "Leica|Q2|compact camera",
            "GoPro|Hero 12|action camera",
            "Blackmagic|Pocket 6K|cinema camera",
        ],
        adjectives: &[
            "Full-frame",
            "Compact",
            "Professional",
            "Lightweight",
            "Weather-sealed",
            "4K",
        ],
        extras: &[
            "with 24-105 mm lens",
            "with two batteries",
            "kit with tripod",
            "with 128 GB card",
            "body only",
            "with gimbal",
        ],
        uses: &[
            "Perfect for weddings, travel and video shoots.",
            "Great for portraits and street photography.",
            "Shoots sharp 4K video with fast autofocus.",
            "Ideal for beginners who want to try a professional camera.",
            "Sensor cleaned and firmware updated after every rental.",
        ],
        included: &[
            "two batteries",
            "charger",
            "camera bag",
            "64 GB SD card",
            "neck strap",
            "lens cap",
            "tripod",
        ],
        price: (2_500, 12_000),
    },
    Category {
        slug: "lenses",
        id: category_id(0x102),
        kind: Kind::Item,
        weight: 6,
        products: &[
            "Canon|RF 24-70mm f/2.8|zoom lens",
            "Canon|EF 100mm f/2.8|macro lens",
            "Canon|RF 50mm f/1.8|prime lens",
            "Sigma|35mm f/1.4 Art|prime lens",
            "Sigma|150-600mm|telephoto lens",
            "Sony|FE 85mm f/1.8|portrait lens",
            "Sony|FE 16-35mm f/4|wide-angle lens",
            "Tamron|70-200mm f/2.8|telephoto lens",
            "Nikon|Z 50mm f/1.8|prime lens",
            "Fujifilm|XF 56mm f/1.2|portrait lens",
            "Samyang|14mm f/2.8|wide-angle lens",
        ],
        adjectives: &["Fast", "Sharp", "Bright", "Stabilised", "Professional"],
        extras: &["with lens hood", "with UV filter", "for full-frame bodies"],
        uses: &[
            "Beautiful background blur for portraits.",
            "Great for wildlife, sports and aviation.",
            "Tack sharp from edge to edge, perfect for landscapes and architecture.",
            "Weather-sealed and silent autofocus for video.",
        ],
        included: &[
            "lens hood",
            "front and rear caps",
            "padded pouch",
            "UV filter",
        ],
        price: (1_500, 8_000),
    },
    Category {
        slug: "drones",
        id: category_id(0x103),
        kind: Kind::Item,
        weight: 4,
        products: &[
            "DJI|Mini 4 Pro|drone",
            "DJI|Mini 3|camera drone",
            "DJI|Air 3|drone",
            "DJI|Mavic 3 Classic|drone",
            "DJI|Avata 2|FPV drone",
            "Autel|EVO Lite+|drone",
            "Parrot|Anafi|drone",
        ],
        adjectives: &["Foldable", "Compact", "4K", "Long-range"],
        extras: &["with three batteries", "Fly More combo", "with ND filters"],
        uses: &[
            "Stunning aerial photos and 4K video.",
            "Under 250 g: easy to fly legally in open areas.",
            "Obstacle sensing and return to home for safe flights.",
            "Registered drone; a short briefing is included.",
        ],
        included: &[
            "three batteries",
            "charging hub",
            "spare propellers",
            "carrying case",
            "ND filters",
        ],
        price: (3_000, 12_000),
    },
    Category {
        slug: "bikes",
        id: category_id(0x104),
        kind: Kind::Item,
        weight: 8,
        products: &[
            "Trek|FX 3|hybrid bike",
            "Specialized|Sirrus|city bike",
            "Brompton|C Line|folding bike",
            "Decathlon|Rockrider|mountain bike",
            "Giant|Escape|road bike",
            "Cannondale|Topstone|gravel bike",
            "Babboe|Curve|cargo bike",
            "Woom|4|kids bike",
            "Peugeot|LR01|vintage bike",
            "Btwin|Elops|city bike",
        ],
        adjectives: &["Lightweight", "Comfortable", "Sturdy", "Classic", "Fast"],
        extras: &["with child seat", "with panniers", "with helmet and lock"],
        uses: &[
            "Perfect for exploring Paris along the Seine.",
            "Serviced every month, tyres and brakes checked.",
            "Great for a weekend ride in the Bois de Vincennes.",
            "Adjustable saddle, fits riders from 1.60 m to 1.90 m.",
        ],
        included: &["helmet", "lock", "lights", "pump", "child seat", "panniers"],
        price: (1_000, 4_000),
    },
    Category {
        slug: "e-bikes",
        id: category_id(0x105),
        kind: Kind::Item,
        weight: 6,
        products: &[
            "Trek|Allant+|e-bike",
            "VanMoof|S5|e-bike",
            "Cowboy|4|e-bike",
            "Specialized|Turbo Vado|e-bike",
            "Gazelle|Ultimate|e-bike",
            "Riese & Müller|Load 75|cargo e-bike",
            "Decathlon|Elops 920E|electric bike",
            "Brompton|Electric|folding e-bike",
            "Moustache|Lundi 27|electric bike",
        ],
        adjectives: &["Electric", "Powerful", "Comfortable", "Long-range"],
        extras: &["with two batteries", "with child seat", "80 km range"],
        uses: &[
            "Up to 80 km on one charge, charger included.",
            "Effortless climbs to Montmartre.",
            "Perfect for commuting or a day trip along the canals.",
            "Battery fully charged before every rental.",
        ],
        included: &["charger", "helmet", "lock", "phone holder", "spare battery"],
        price: (2_500, 7_000),
    },
    Category {
        slug: "tools",
        id: category_id(0x106),
        kind: Kind::Item,
        weight: 5,
        products: &[
            "Kärcher|K5|pressure washer",
            "Kärcher|SE 4002|carpet cleaner",
            "Little Giant|Velocity|ladder",
            "Stanley|FatMax|toolbox set",
            "Stihl|HSA 56|hedge trimmer",
            "Bosch|Pro|tile cutter",
            "Fiskars|Xact|garden tool set",
            "Wolfcraft|Master 200|workbench",
            "Einhell|TE-AC|air compressor",
        ],
        adjectives: &["Heavy-duty", "Handy", "Complete", "Professional"],
        extras: &[
            "with accessories",
            "for garden and terrace",
            "with carry case",
        ],
        uses: &[
            "Everything you need for a weekend of DIY.",
            "Cleans terraces, cars and garden furniture in no time.",
            "Cleaned and checked after every rental.",
            "Ideal for moving in or renovating a flat.",
        ],
        included: &[
            "carry case",
            "extension cord",
            "safety glasses",
            "gloves",
            "user manual",
        ],
        price: (1_000, 5_000),
    },
    Category {
        slug: "power-tools",
        id: category_id(0x107),
        kind: Kind::Item,
        weight: 8,
        products: &[
            "Bosch|GBH 2-28|hammer drill",
            "Bosch|PST 900|jigsaw",
            "Makita|DHP482|cordless drill",
            "Makita|GA5030|angle grinder",
            "DeWalt|DCS570|circular saw",
            "DeWalt|DCF887|impact driver",
            "Festool|TS 55|track saw",
            "Hilti|TE 30|rotary hammer",
            "Metabo|SXE 150|orbital sander",
            "Ryobi|R18N16G|nail gun",
            "Milwaukee|M18|cordless drill",
        ],
        adjectives: &["Cordless", "Powerful", "Professional", "Compact", "18V"],
        extras: &["with two batteries", "with drill bits", "with case"],
        uses: &[
            "Drills easily through concrete and brick.",
            "Perfect for hanging shelves, curtains and frames.",
            "Clean, precise cuts in wood and laminate.",
            "Batteries charged and blades sharpened before every rental.",
        ],
        included: &[
            "two batteries",
            "charger",
            "drill bits",
            "carry case",
            "saw blades",
            "dust bag",
        ],
        price: (800, 4_500),
    },
    Category {
        slug: "camping",
        id: category_id(0x108),
        kind: Kind::Item,
        weight: 7,
        products: &[
            "Quechua|2 Seconds|tent",
            "MSR|Hubba Hubba|tent",
            "Coleman|Classic|camping stove",
            "Osprey|Atmos 65|hiking backpack",
            "Therm-a-Rest|NeoAir|sleeping pad",
            "Forclaz|Trek 500|sleeping bag",
            "Jetboil|Flash|stove",
            "Helinox|Chair One|camping chair",
            "Yeti|Tundra 45|cooler box",
            "Vango|Odyssey|family tent",
        ],
        adjectives: &["Ultralight", "Waterproof", "Spacious", "Family", "Compact"],
        extras: &["for 4 people", "with footprint", "for the weekend"],
        uses: &[
            "Sets up in minutes, perfect for festivals and weekends away.",
            "Waterproof and tested in the Alps.",
            "Everything for a night under the stars in Fontainebleau.",
            "Cleaned and dried after every trip.",
        ],
        included: &[
            "footprint",
            "pegs",
            "repair kit",
            "stuff sack",
            "gas canister",
        ],
        price: (800, 5_000),
    },
    Category {
        slug: "audio",
        id: category_id(0x109),
        kind: Kind::Item,
        weight: 7,
        products: &[
            "Bose|S1 Pro|speaker",
            "JBL|PartyBox 310|speaker",
            "Yamaha|P-45|digital piano",
            "Fender|Stratocaster|electric guitar",
            "Marshall|DSL40|guitar amplifier",
            "Pioneer|DDJ-400|DJ controller",
            "Shure|SM58|microphone",
            "Roland|TD-07|electronic drum kit",
            "Sony|WH-1000XM5|headphones",
            "Zoom|H6|audio recorder",
            "Yamaha|FG800|acoustic guitar",
        ],
        adjectives: &["Loud", "Portable", "Wireless", "Professional", "Vintage"],
        extras: &["for parties", "with stand", "with cables"],
        uses: &[
            "Loud and clear for birthday parties and small events.",
            "Great sound for rehearsals and gigs.",
            "Bluetooth, battery powered, up to 12 hours of music.",
            "Perfect for podcasts and interviews.",
        ],
        included: &["cables", "stand", "carry bag", "power supply", "microphone"],
        price: (1_500, 9_000),
    },
    Category {
        slug: "photography",
        id: category_id(0x201),
        kind: Kind::Service,
        weight: 5,
        products: &[
            "wedding photographer",
            "portrait photographer",
            "event photographer",
            "product photographer",
            "real estate photographer",
            "family photo shoot",
            "corporate headshots",
            "drone videographer",
        ],
        adjectives: &[
            "Professional",
            "Experienced",
            "Creative",
            "Award-winning",
            "Affordable",
        ],
        extras: &["in Paris", "with edited photos", "evenings and weekends"],
        uses: &[
            "Edited photos delivered within a week in an online gallery.",
            "Natural light portraits in the streets and parks of Paris.",
            "Weddings, baptisms, birthdays and corporate events.",
            "Studio lighting brought to your home or office.",
        ],
        included: &[],
        price: (4_000, 15_000),
    },
    Category {
        slug: "moving",
        id: category_id(0x202),
        kind: Kind::Service,
        weight: 5,
        products: &[
            "movers with van",
            "man with a van",
            "furniture moving",
            "piano movers",
            "moving truck with driver",
            "packing service",
            "student moving",
            "office relocation",
        ],
        adjectives: &["Reliable", "Fast", "Careful", "Affordable", "Insured"],
        extras: &["same day", "with boxes", "all of Paris"],
        uses: &[
            "Two strong movers and a 12 m³ van.",
            "Stairs without a lift are no problem.",
            "Furniture wrapped and protected, assembly included.",
            "Insured for your belongings during the move.",
        ],
        included: &[],
        price: (3_000, 9_000),
    },
    Category {
        slug: "repair",
        id: category_id(0x203),
        kind: Kind::Service,
        weight: 5,
        products: &[
            "bike repair technician",
            "phone screen repair",
            "laptop repair",
            "appliance repair",
            "handyman",
            "plumber",
            "electrician",
            "furniture assembly",
        ],
        adjectives: &["Quick", "Certified", "Friendly", "Experienced", "Local"],
        extras: &["at your home", "same day", "with spare parts"],
        uses: &[
            "Repairs at your home, spare parts on hand.",
            "Free quote before any work starts.",
            "Washing machines, dishwashers and ovens of every brand.",
            "IKEA furniture assembled quickly and properly.",
        ],
        included: &[],
        price: (2_500, 8_000),
    },
    Category {
        slug: "cleaning",
        id: category_id(0x204),
        kind: Kind::Service,
        weight: 5,
        products: &[
            "deep cleaning",
            "apartment cleaning",
            "end of tenancy cleaning",
            "window cleaning",
            "carpet cleaning",
            "office cleaning",
            "Airbnb turnover cleaning",
        ],
        adjectives: &[
            "Thorough",
            "Eco-friendly",
            "Reliable",
            "Fast",
            "Professional",
        ],
        extras: &["with products", "weekly", "same day"],
        uses: &[
            "Eco-friendly products and equipment provided.",
            "Kitchens, bathrooms and floors spotless.",
            "Get your deposit back with an end of tenancy clean.",
            "Linen changed and flat ready for the next guests.",
        ],
        included: &[],
        price: (2_000, 5_000),
    },
    Category {
        slug: "apartment",
        id: category_id(0x301),
        kind: Kind::Property,
        weight: 10,
        products: &[
            "studio",
            "1-bedroom apartment",
            "2-bedroom apartment",
            "3-bedroom apartment",
            "loft",
            "penthouse",
            "duplex apartment",
        ],
        adjectives: &[
            "Sunny",
            "Bright",
            "Cosy",
            "Modern",
            "Charming",
            "Spacious",
            "Quiet",
            "Renovated",
            "Haussmannian",
        ],
        extras: &[
            "with balcony",
            "with terrace",
            "with view",
            "near the metro",
        ],
        uses: &[
            "Five minutes from the metro.",
            "Ideal for families or a group of friends.",
            "Perfect for a weekend in Paris.",
            "Quiet street, bakery and market around the corner.",
            "Fully equipped kitchen and fast Wi-Fi for remote work.",
        ],
        included: &[
            "wifi",
            "balcony",
            "washing machine",
            "dishwasher",
            "elevator",
            "air conditioning",
            "parking",
            "terrace",
        ],
        price: (6_000, 35_000),
    },
    Category {
        slug: "room",
        id: category_id(0x302),
        kind: Kind::Property,
        weight: 5,
        products: &[
            "private room",
            "double room",
            "guest room",
            "room in shared flat",
            "attic room",
            "student room",
        ],
        adjectives: &["Cosy", "Bright", "Quiet", "Affordable", "Charming"],
        extras: &["with private bathroom", "near the metro", "with breakfast"],
        uses: &[
            "Shared kitchen and a friendly host.",
            "Ideal for students and short stays.",
            "Quiet room overlooking the courtyard.",
            "Breakfast with fresh croissants on request.",
        ],
        included: &[
            "wifi",
            "desk",
            "shared kitchen",
            "washing machine",
            "towels",
        ],
        price: (3_000, 12_000),
    },
    Category {
        slug: "house",
        id: category_id(0x303),
        kind: Kind::Property,
        weight: 4,
        products: &[
            "family house",
            "townhouse",
            "house with garden",
            "villa",
            "cottage",
        ],
        adjectives: &["Spacious", "Charming", "Modern", "Quiet", "Family"],
        extras: &["with garden", "with pool", "with parking"],
        uses: &[
            "Private garden with barbecue.",
            "Ideal for families, quiet neighbourhood close to Paris.",
            "Three floors, large living room and fireplace.",
            "Perfect for a group holiday near the city.",
        ],
        included: &["garden", "parking", "wifi", "barbecue", "fireplace", "pool"],
        price: (15_000, 60_000),
    },
];

/// The area: Paris and its inner suburbs.
pub const LAT_MIN: f64 = 48.80;
pub const LAT_MAX: f64 = 48.92;
pub const LNG_MIN: f64 = 2.25;
pub const LNG_MAX: f64 = 2.42;
/// Listings cluster around here (Châtelet).
const CENTRE: (f64, f64) = (48.8566, 2.3522);

/// Neighbourhoods (and near suburbs) with their rough centres: a listing
/// mentions the one nearest to it.
pub static NEIGHBOURHOODS: &[(&str, f64, f64)] = &[
    ("Le Marais", 48.8590, 2.3620),
    ("Montmartre", 48.8867, 2.3431),
    ("Bastille", 48.8532, 2.3691),
    ("Belleville", 48.8717, 2.3848),
    ("Batignolles", 48.8870, 2.3160),
    ("Oberkampf", 48.8650, 2.3780),
    ("Saint-Germain-des-Prés", 48.8540, 2.3330),
    ("Montparnasse", 48.8420, 2.3210),
    ("Canal Saint-Martin", 48.8710, 2.3650),
    ("Butte-aux-Cailles", 48.8270, 2.3500),
    ("Pigalle", 48.8820, 2.3370),
    ("Nation", 48.8480, 2.3960),
    ("République", 48.8670, 2.3630),
    ("Opéra", 48.8710, 2.3320),
    ("Auteuil", 48.8480, 2.2650),
    ("Passy", 48.8580, 2.2800),
    ("La Villette", 48.8940, 2.3880),
    ("Bercy", 48.8350, 2.3820),
    ("Grenelle", 48.8490, 2.2950),
    ("Les Ternes", 48.8800, 2.2960),
    ("Ménilmontant", 48.8660, 2.3900),
    ("Latin Quarter", 48.8490, 2.3450),
    ("Châtelet", 48.8590, 2.3470),
    ("Gare de Lyon", 48.8440, 2.3740),
    ("Denfert-Rochereau", 48.8340, 2.3320),
    ("Place d'Italie", 48.8310, 2.3560),
    ("Buttes-Chaumont", 48.8800, 2.3820),
    ("Trocadéro", 48.8620, 2.2880),
    ("Invalides", 48.8560, 2.3130),
    ("Convention", 48.8370, 2.2960),
    ("Alésia", 48.8280, 2.3270),
    ("Porte de Vincennes", 48.8470, 2.4100),
    ("Clichy", 48.9040, 2.3060),
    ("Saint-Ouen", 48.9110, 2.3340),
    ("Aubervilliers", 48.9140, 2.3830),
    ("Pantin", 48.8940, 2.4090),
    ("Montreuil", 48.8610, 2.4150),
    ("Levallois", 48.8950, 2.2870),
    ("Neuilly", 48.8850, 2.2680),
    ("Boulogne", 48.8350, 2.2550),
    ("Issy-les-Moulineaux", 48.8240, 2.2700),
    ("Vanves", 48.8210, 2.2900),
    ("Montrouge", 48.8160, 2.3160),
    ("Gentilly", 48.8150, 2.3440),
    ("Ivry-sur-Seine", 48.8150, 2.3840),
];

/// A point in the area: two thirds clustered around the centre (σ ≈ 2.4 km
/// north–south, 2.3 km east–west), the rest uniform over the whole box.
pub fn point(rng: &mut Rng) -> (f64, f64) {
    loop {
        let (lat, lng) = if chance(rng, 0.65) {
            (CENTRE.0 + 0.022 * gauss(rng), CENTRE.1 + 0.032 * gauss(rng))
        } else {
            (
                LAT_MIN + (LAT_MAX - LAT_MIN) * unit(rng),
                LNG_MIN + (LNG_MAX - LNG_MIN) * unit(rng),
            )
        };
        if (LAT_MIN..=LAT_MAX).contains(&lat) && (LNG_MIN..=LNG_MAX).contains(&lng) {
            return (lat, lng);
        }
    }
}

/// The neighbourhood nearest to a point.
pub fn neighbourhood(lat: f64, lng: f64) -> &'static str {
    let cos = CENTRE.0.to_radians().cos();
    NEIGHBOURHOODS
        .iter()
        .min_by(|a, b| {
            let d =
                |(_, la, ln): &&(&str, f64, f64)| (la - lat).powi(2) + ((ln - lng) * cos).powi(2);
            d(a).total_cmp(&d(b))
        })
        .map(|(name, _, _)| *name)
        .expect("neighbourhoods are listed")
}

/// A category, drawn by weight.
pub fn category(rng: &mut Rng) -> &'static Category {
    let total: u64 = CATEGORIES.iter().map(|c| u64::from(c.weight)).sum();
    let mut at = rng.next() % total;
    for category in CATEGORIES {
        if at < u64::from(category.weight) {
            return category;
        }
        at -= u64::from(category.weight);
    }
    unreachable!("the weights add up to the total")
}

/// `Brand|Model|noun` split; services and properties are all noun.
pub fn product_parts(product: &str) -> (&str, &str, &str) {
    let mut parts = product.splitn(3, '|');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(brand), Some(model), Some(noun)) => (brand, model, noun),
        _ => ("", "", product),
    }
}

/// The first letter in upper case.
pub fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Words a query can be made of: lower-case, letters (and hyphens) only,
/// at least three characters. `e-bike` stays whole.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | '.' | '|' | '/'))
        .map(|word| {
            word.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|word| {
            word.chars().count() >= 3
                && word.chars().all(|c| c.is_alphabetic() || c == '-')
                && !matches!(word.as_str(), "with" | "for" | "the" | "and" | "near")
        })
}

/// The last word of a noun phrase (`camera` of `mirrorless camera`).
pub fn head_noun(noun: &str) -> &str {
    noun.rsplit(' ').next().unwrap_or(noun)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_the_seeded_ones_with_matching_kinds() {
        for category in CATEGORIES {
            let suffix = category.id.as_u128() & 0xfff;
            let expected = match category.kind {
                Kind::Item => 0x100,
                Kind::Service => 0x200,
                Kind::Property => 0x300,
            };
            assert_eq!(suffix & 0xf00, expected, "{}", category.slug);
            assert!(!category.products.is_empty() && !category.uses.is_empty());
            assert!(category.price.0 < category.price.1);
        }
    }

    #[test]
    fn points_stay_in_the_area_and_cluster_in_the_centre() {
        let mut rng = Rng(7);
        let points: Vec<_> = (0..10_000).map(|_| point(&mut rng)).collect();
        assert!(points.iter().all(
            |(lat, lng)| (LAT_MIN..=LAT_MAX).contains(lat) && (LNG_MIN..=LNG_MAX).contains(lng)
        ));
        let central = points
            .iter()
            .filter(|(lat, lng)| (lat - CENTRE.0).abs() < 0.03 && (lng - CENTRE.1).abs() < 0.04)
            .count();
        // The central box is ~12 % of the area but holds over half the points.
        assert!(central > 5_000, "{central}");
    }

    #[test]
    fn words_keep_searchable_terms_only() {
        let got: Vec<_> = words("Canon EOS R5 mirrorless camera with 24-105 mm lens").collect();
        assert_eq!(got, ["canon", "eos", "mirrorless", "camera", "lens"]);
        let got: Vec<_> = words("Trek Allant+ e-bike").collect();
        assert_eq!(got, ["trek", "allant", "e-bike"]);
    }

    #[test]
    fn the_nearest_neighbourhood_is_found() {
        assert_eq!(neighbourhood(48.8868, 2.3430), "Montmartre");
        assert_eq!(neighbourhood(48.8530, 2.3690), "Bastille");
    }
}

//! The category tree (seeded by the migration): what a listing can be filed
//! under. A category's `kind` is the listing type it accepts.

use axum::Extension;
use rentify_platform::{ApiResult, PlatformState};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{Listings, model::ListingType};

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new().routes(routes!(list_categories))
}

/// A node of the category tree.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Category {
    pub id: Uuid,
    #[schema(example = "category")]
    pub object: &'static str,
    pub slug: String,
    pub name: String,
    /// The listing type filed under this category (children share their root's).
    pub kind: ListingType,
    pub parent_id: Option<Uuid>,
    /// Sub-categories, in display order.
    #[schema(no_recursion)]
    pub children: Vec<Category>,
}

/// The category roots with their sub-categories nested in `children`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryTree {
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<Category>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    parent_id: Option<Uuid>,
    slug: String,
    name: String,
    kind: String,
}

/// The whole category tree, nested: roots (`items`, `services`,
/// `properties`) in `data`, sub-categories in `children`, in display order.
/// Small and static, so never paginated.
#[utoipa::path(
    get, path = "/v1/categories", tag = "listings",
    responses((status = 200, description = "The category tree", body = CategoryTree))
)]
pub async fn list_categories(
    Extension(listings): Extension<Listings>,
) -> ApiResult<axum::Json<CategoryTree>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, parent_id, slug, name, kind FROM categories ORDER BY position, slug",
    )
    .fetch_all(listings.db())
    .await?;
    Ok(axum::Json(CategoryTree {
        object: "list",
        data: build_tree(rows),
    }))
}

fn build_tree(rows: Vec<Row>) -> Vec<Category> {
    let nodes: Vec<(Option<Uuid>, Category)> = rows
        .into_iter()
        .filter_map(|row| {
            Some((
                row.parent_id,
                Category {
                    id: row.id,
                    object: "category",
                    slug: row.slug,
                    name: row.name,
                    kind: ListingType::parse(&row.kind)?,
                    parent_id: row.parent_id,
                    children: Vec::new(),
                },
            ))
        })
        .collect();
    fn children_of(parent: Option<Uuid>, nodes: &[(Option<Uuid>, Category)]) -> Vec<Category> {
        nodes
            .iter()
            .filter(|(p, _)| *p == parent)
            .map(|(_, node)| Category {
                children: children_of(Some(node.id), nodes),
                ..node.clone()
            })
            .collect()
    }
    children_of(None, &nodes)
}

/// The listing type a category accepts, or `None` for an unknown category.
pub async fn kind_of(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<ListingType>> {
    let kind: Option<String> = sqlx::query_scalar("SELECT kind FROM categories WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(kind.as_deref().and_then(ListingType::parse))
}

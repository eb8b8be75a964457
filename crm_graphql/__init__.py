"""crm_graphql: a CRM whose whole surface is one GraphQL API."""

__version__ = "0.1.0"

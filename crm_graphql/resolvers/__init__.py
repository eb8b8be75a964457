"""Resolvers turn GraphQL arguments into service calls and service results into values
the schema's types read. They hold no business rules."""

"""Typed domain errors. The GraphQL layer turns them into ``UserError`` values."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DomainError(Exception):
    """Base of every expected failure of a business operation."""

    message: str
    field: str | None = None
    code: str = "VALIDATION"

    def __str__(self) -> str:
        return self.message


class Invalid(DomainError):
    """Input breaks a rule (malformed email, negative amount...)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, field, "VALIDATION")


class NotFound(DomainError):
    """No such object in the actor's workspace (foreign and unknown IDs look the same)."""

    def __init__(self, message: str = "Not found", field: str | None = None) -> None:
        super().__init__(message, field, "NOT_FOUND")


class Duplicate(DomainError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, field, "DUPLICATE")


class Conflict(DomainError):
    """``expectedVersion`` did not match, or a concurrent edit won."""

    def __init__(self, message: str, field: str | None = "expectedVersion") -> None:
        super().__init__(message, field, "CONFLICT")


class Forbidden(DomainError):
    def __init__(self, message: str = "You are not allowed to do this") -> None:
        super().__init__(message, None, "FORBIDDEN")


class Unauthenticated(DomainError):
    def __init__(self, message: str = "Authentication required") -> None:
        super().__init__(message, None, "UNAUTHENTICATED")


class InvalidCredentials(DomainError):
    def __init__(self) -> None:
        super().__init__("Invalid email or password", None, "INVALID_CREDENTIALS")

"""GraphQL documents that several test modules send, written once. A module keeps the
documents only it sends (what it alone selects and asserts on) next to its tests."""

from __future__ import annotations

CREATE_CUSTOMER = """mutation($i: CreateCustomerInput!) {
  createCustomer(input: $i) { customer { id } errors { code field message } }
}"""

UPDATE_CUSTOMER = """mutation($i: UpdateCustomerInput!) {
  updateCustomer(input: $i) { customer { id customFields } errors { code field message } }
}"""

CREATE_ACTIVITY = """mutation($i: CreateActivityInput!) {
  createActivity(input: $i) { activity { id } errors { code } }
}"""

START_CONVERSATION = """mutation($i: StartConversationInput!) {
  startConversation(input: $i) { conversation { id } errors { code } }
}"""

ARCHIVE_CUSTOM_FIELD_DEFINITION = """mutation($i: ArchiveCustomFieldDefinitionInput!) {
  archiveCustomFieldDefinition(input: $i) {
    customFieldDefinition { id archivedAt } errors { code field message }
  }
}"""

"""Contact cleaner: a Nexo mapper for CRM → accounting contact pipelines.

Each canonical contact comes out with its name split and cased (titles
dropped, "LAST, First" turned around) and its phone in E.164. A contact
without any name, or with a phone that is not a phone, is a `failed`
outcome (`rejected`): the host quarantines it with the reason and the batch
goes on.
"""

from __future__ import annotations

from cleaner import ContactCleaner
from nexo_sdk import export_mapper

#: The export componentize-py looks for (`nexo:connector/mapping`).
Mapping = export_mapper(ContactCleaner)

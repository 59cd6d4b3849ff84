# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SSM Session documents: the catalogue StartSession resolves, and GetDocument / DescribeDocument.

The catalogue (:func:`session_documents`):

- **SSM-SessionManagerRunShell**, the account's Session Manager preferences: a Standard_Stream document whose
  ``inputs`` are the world's ``aws.session_preferences``, every input present with the console's defaults. It exists
  only once the account saved preferences: a world without ``aws.session_preferences`` has none (GetDocument answers
  InvalidDocument) and StartSession without a DocumentName uses the defaults.
- **AWS-StartInteractiveCommand** (owner Amazon): InteractiveCommands, parameter ``command`` (String, required),
  ``properties.linux.commands`` ``{{ command }}``. Its exact text is not in the sources gathered (the content here is
  modelled on the user guide's InteractiveCommands example, "Session document schema"); ``runAsElevated`` false, so
  Run As applies as for a shell [unverified].
- the world's ``aws.session_documents`` (owner the account), Standard_Stream or InteractiveCommands.

Port and NonInteractiveCommands documents (AWS-StartPortForwardingSession, AWS-StartNonInteractiveCommand...) are not
in the catalogue: the emulated agent does not run those plugins, so they answer InvalidDocument like any unknown name.

GetDocument / DescribeDocument (API reference; shapes and patterns from botocore's model): ``Name`` (pattern
``^[a-zA-Z0-9_\\-.:/]{3,128}$``, a name or a document ARN), ``DocumentVersion`` (``$LATEST``, ``$DEFAULT`` or a number;
every document here has version 1), ``VersionName`` (none here), GetDocument's ``DocumentFormat`` (JSON by default,
YAML). Errors: InvalidDocument ("The specified SSM document doesn't exist"), InvalidDocumentVersion, and
ValidationException for a value outside its pattern.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import re
from typing import Any

import yaml

from .aws_ssm import ACTIONS, validation_error
from .context import CallContext
from .errors import ApiError
from .world import PREFERENCES_DOCUMENT, SessionDocument, SessionInputs, World

INTERACTIVE_COMMAND_DOCUMENT = 'AWS-StartInteractiveCommand'
# botocore ssm service-2.json: DocumentARN, DocumentVersion and DocumentVersionName patterns.
DOCUMENT_ARN_PATTERN = re.compile(r'^[a-zA-Z0-9_\-.:/]{3,128}$')
VERSION_PATTERN = re.compile(r'^(\$LATEST|\$DEFAULT|[1-9][0-9]*)$')
VERSION_NAME_PATTERN = re.compile(r'^[a-zA-Z0-9_\-.]{1,128}$')
# The description the console writes into the preferences document.
PREFERENCES_DESCRIPTION = 'Document to hold regional settings for Session Manager'
_DOCUMENT_ARN = re.compile(r'^arn:aws[a-z-]*:ssm:[a-z0-9-]+:([0-9]{12})?:document/(.+)$')


def _interactive_command(world: World) -> SessionDocument:
    content = {
        'schemaVersion': '1.0',
        'description': 'Document to run a single interactive command on an instance',
        'sessionType': 'InteractiveCommands',
        'parameters': {'command': {'type': 'String', 'description': 'The command to run on the instance'}},
        'properties': {platform: {'commands': '{{ command }}', 'runAsElevated': False} for platform in ('windows', 'linux', 'macos')},
    }
    return SessionDocument(name=INTERACTIVE_COMMAND_DOCUMENT, owner='Amazon', content=content,
                           created=world.started_at - datetime.timedelta(days=365))


def preferences_document(world: World) -> SessionDocument | None:
    """SSM-SessionManagerRunShell, when the account has saved preferences."""
    preferences = world.aws.session_preferences
    if preferences is None:
        return None
    content = {'schemaVersion': '1.0', 'description': PREFERENCES_DESCRIPTION, 'sessionType': 'Standard_Stream',
               'inputs': preferences.inputs}
    return SessionDocument(name=PREFERENCES_DOCUMENT, owner=world.aws.account_id, content=content,
                           created=world.started_at - datetime.timedelta(days=30))


def default_inputs(world: World) -> SessionInputs:
    """The preferences a session uses when its document has none: the account's, else the defaults."""
    return world.aws.session_preferences or SessionInputs()


def session_documents(world: World) -> list[SessionDocument]:
    documents = [preferences_document(world), _interactive_command(world)] + list(world.aws.session_documents)
    return [d for d in documents if d is not None]


def find_document(ctx: CallContext, reference: str) -> SessionDocument | None:
    """A Session document by name or ARN (in the call's Region), or None."""
    name = reference
    arn = _DOCUMENT_ARN.match(reference)
    if arn:
        owner, name = arn.group(1), arn.group(2)
        if owner not in (None, ctx.world.aws.account_id) or not reference.split(':')[3] == ctx.world.aws.region:
            return None
    if ctx.region not in (None, ctx.world.aws.region):
        return None
    return next((d for d in session_documents(ctx.world) if d.name == name), None)


def check_name(value: Any, field: str = 'name') -> str:
    if not isinstance(value, str) or not DOCUMENT_ARN_PATTERN.match(value):
        raise validation_error(field, value, r'Member must satisfy regular expression pattern: ^[a-zA-Z0-9_\-.:/]{3,128}$')
    return value


def invalid_document(name: str) -> ApiError:
    return ApiError('InvalidDocument', f'Document with name {name} does not exist.', 400)


def _requested(ctx: CallContext) -> SessionDocument:
    name = check_name(ctx.params.get('Name'))
    version, version_name = ctx.params.get('DocumentVersion'), ctx.params.get('VersionName')
    if version is not None and (not isinstance(version, str) or not VERSION_PATTERN.match(version)):
        raise validation_error('documentVersion', version, r'Member must satisfy regular expression pattern: ([$]LATEST|[$]DEFAULT|^[1-9][0-9]*$)')
    if version_name is not None and (not isinstance(version_name, str) or not VERSION_NAME_PATTERN.match(version_name)):
        raise validation_error('versionName', version_name, r'Member must satisfy regular expression pattern: ^[a-zA-Z0-9_\-.]{1,128}$')
    document = find_document(ctx, name)
    if document is None:
        raise invalid_document(name)
    if version not in (None, '$LATEST', '$DEFAULT', '1') or version_name is not None:
        # Every document here has one version, 1, and no version name.
        raise ApiError('InvalidDocumentVersion', 'The document version is not valid or does not exist.', 400)
    return document


def _content_text(document: SessionDocument, document_format: str) -> str:
    if document_format == 'YAML':
        return yaml.safe_dump(document.content, sort_keys=False)
    return json.dumps(document.content, indent=2)


@ACTIONS.register('GetDocument')
async def get_document(ctx: CallContext) -> dict[str, Any]:
    document_format = ctx.params.get('DocumentFormat') or 'JSON'
    if document_format not in ('JSON', 'YAML', 'TEXT'):
        raise validation_error('documentFormat', document_format, 'Member must satisfy enum value set: [YAML, JSON, TEXT]')
    document = _requested(ctx)
    if document_format == 'TEXT':
        # TEXT is for documents written as text (DocumentFormat TEXT at creation); a Session document is JSON.
        raise ApiError('ValidationException', 'The document format TEXT does not match the format of the document.', 400)
    return {'Name': document.name, 'CreatedDate': document.created.timestamp(), 'DocumentVersion': '1', 'Status': 'Active',
            'Content': _content_text(document, document_format), 'DocumentType': 'Session', 'DocumentFormat': document_format}


@ACTIONS.register('DescribeDocument')
async def describe_document(ctx: CallContext) -> dict[str, Any]:
    document = _requested(ctx)
    content = _content_text(document, 'JSON')
    parameters = [{'Name': name, 'Type': spec.get('type', 'String'), 'Description': spec.get('description', ''),
                   **({'DefaultValue': str(spec['default'])} if 'default' in spec else {})}
                  for name, spec in document.parameters.items()]
    description: dict[str, Any] = {
        'Hash': hashlib.sha256(content.encode()).hexdigest(), 'HashType': 'Sha256', 'Name': document.name,
        'Owner': document.owner, 'CreatedDate': document.created.timestamp(), 'Status': 'Active', 'DocumentVersion': '1',
        'Description': document.content.get('description', ''), 'PlatformTypes': ['Windows', 'Linux', 'MacOS'],
        'DocumentType': 'Session', 'SchemaVersion': document.content.get('schemaVersion', '1.0'), 'LatestVersion': '1',
        'DefaultVersion': '1', 'DocumentFormat': 'JSON', 'Tags': [{'Key': k, 'Value': v} for k, v in document.tags.items()],
    }
    if parameters:
        description['Parameters'] = parameters
    return {'Document': description}

"""The file protocol between the fence agent (inside a node) and the broker (root namespace).

A request is ``<state>/fence/<id>.req`` (JSON: action, target, requester), written
under a temporary name and renamed into place; the broker answers with
``<id>.ans`` (JSON: rc, optional error, nodes for ``list``).
"""

REQUEST_DIR = "fence"
REQUEST_SUFFIX = ".req"
ANSWER_SUFFIX = ".ans"

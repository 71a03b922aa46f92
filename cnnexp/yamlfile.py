"""The one reader of YAML files in cnnexp (sweep files, chain and net files): PyYAML's safe loader, bounded.

    >>> MAX_YAML_DEPTH
    50
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnexp.errors import ConfigError
from cnnexp.paths import read_text

MAX_YAML_BYTES = 1 << 20  # a sweep or chain file is a few hundred bytes; a megabyte is surely not one
MAX_YAML_NODES = 200_000  # values after every alias is expanded (an alias bomb expands to billions)
MAX_YAML_DEPTH = 50  # nesting of lists and mappings (a sweep file needs 4)
MAX_INT_DIGITS = 40  # an integer literal longer than this is no axis value (seeds end at 2**64, 20 digits)


def read_yaml(path: Path) -> Any:
    """The one reader of YAML files in cnnexp: PyYAML's safe loader (tags that build Python objects are
    refused, never run), refusing a key given twice, and bounded before anything is built: at most
    MAX_YAML_BYTES of text, MAX_YAML_DEPTH levels of nesting, MAX_YAML_NODES values with every alias
    expanded (an alias bomb is refused from its node graph, never expanded), integers of at most
    MAX_INT_DIGITS digits.

    Raises:
        ConfigError: the file is missing, not a regular file (a device, a FIFO: refused without reading),
            too large, unreadable or not valid YAML, or past a bound; the message names the file and line.
    """
    import yaml

    text = read_text(path, MAX_YAML_BYTES, "YAML file", error=ConfigError)
    loader = None
    try:
        loader = _BoundedLoader()(text)  # (its reader refuses unprintable characters at once)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = e.problem or e.context or "invalid YAML"
        raise ConfigError(f"{path}: YAML error{where}: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: YAML error: {' '.join(str(e).split())}") from None
    except RecursionError:  # a bound above should come first; this is the backstop
        raise ConfigError(f"{path}: YAML error: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_size(root: Any) -> None:
    """Refuse a node graph whose values, with every alias expanded, number more than MAX_YAML_NODES.

    Aliases make the graph a DAG (the same node under many parents): count each node once per path to it,
    by memoising each node's expanded size, so a bomb is counted in time linear in its text.
    """
    import yaml

    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        if id(node) in sizes:
            if sizes[id(node)] < 0:
                raise yaml.composer.ComposerError(None, None, "an alias refers to the value that holds it",
                                                  node.start_mark)
            return sizes[id(node)]
        sizes[id(node)] = -1  # in progress: meeting it again is a cycle
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_YAML_NODES:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_YAML_NODES:,} values once its aliases are expanded "
                                "(an alias bomb?)", node.start_mark)
        sizes[id(node)] = total
        return total

    size(root)


def _BoundedLoader() -> Any:
    """yaml.SafeLoader, except that a mapping with a key given twice is an error (not: the last one wins),
    nesting is bounded while composing, long integers are refused before int() sees them, and a key that is
    not hashable (`? [1]`) is an error."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        _depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self._depth += 1
            try:
                if self._depth > MAX_YAML_DEPTH:
                    raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                                                      self.peek_event().start_mark)  # type: ignore[no-untyped-call]
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_yaml_int(self, node: Any) -> Any:
            digits = sum(c.isdigit() for c in str(node.value))
            if digits > MAX_INT_DIGITS:
                raise yaml.constructor.ConstructorError(None, None, f"an integer of {digits} digits is too large "
                                                        f"(at most {MAX_INT_DIGITS})", node.start_mark)
            return super().construct_yaml_int(node)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    hash(key)
                except TypeError:
                    raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value, not a "
                                                            f"{type(key).__name__}", key_node.start_mark) from None
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r:.60} appears twice",
                                                            key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)
    return BoundedLoader

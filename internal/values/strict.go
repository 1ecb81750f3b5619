package values

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// checkDocument refuses what a YAML-to-JSON conversion resolves silently:
// a second YAML document (dropped) and a key given twice in one map (the
// last one wins). Errors name the path and the lines.
func checkDocument(doc string) error {
	dec := yaml.NewDecoder(strings.NewReader(doc))
	var docs []*yaml.Node
	for {
		n := &yaml.Node{}
		err := dec.Decode(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("not valid YAML: %w", err)
		}
		if len(n.Content) > 0 && !isNull(n.Content[0]) {
			docs = append(docs, n)
		}
	}
	if len(docs) > 1 {
		return fmt.Errorf("holds %d YAML documents (the second starts at line %d); values are one document: remove the '---' and merge them",
			len(docs), docs[1].Content[0].Line)
	}
	if len(docs) == 0 {
		return nil
	}
	return duplicateKeys(docs[0].Content[0], "")
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// duplicateKeys reports the first key that appears twice in a map under n.
func duplicateKeys(n *yaml.Node, path string) error {
	switch n.Kind {
	case yaml.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := k.Value
			if path != "" {
				child = path + "." + k.Value
			}
			if line, dup := seen[k.Value]; dup {
				return fmt.Errorf("%s: given twice (lines %d and %d); keep one", child, line, k.Line)
			}
			seen[k.Value] = k.Line
			if err := duplicateKeys(v, child); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := duplicateKeys(c, path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	case yaml.DocumentNode, yaml.AliasNode:
		for _, c := range n.Content {
			if err := duplicateKeys(c, path); err != nil {
				return err
			}
		}
	}
	return nil
}

// Quantity is a resource quantity as kubectl takes it: a string ("500m",
// "8Gi") or a plain number (0.5, 8589934592). Validate checks it.
type Quantity string

// UnmarshalJSON keeps a number's literal text, so 8589934592 stays exact.
func (q *Quantity) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if unq, err := strconv.Unquote(s); err == nil && strings.HasPrefix(s, `"`) {
		s = unq
	}
	*q = Quantity(s)
	return nil
}

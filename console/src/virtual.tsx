// A virtualised list of fixed-height rows: only the rows in view (and a few around them)
// are in the DOM, so a list of thousands scrolls as lightly as a list of twenty.
import type { ComponentChildren } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

const OVERSCAN = 6;

export function VirtualList<T>(props: {
  items: T[];
  rowHeight: number;
  /** Key of an item (stable across reloads). */
  keyOf: (item: T) => string;
  render: (item: T, index: number) => ComponentChildren;
  /** Called when the last rows come into view (to load the next page). */
  onNearEnd?: () => void;
  /** Keep this row in view (keyboard selection). */
  focusIndex?: number;
  label: string;
  class?: string;
}) {
  const ref = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  const { items, rowHeight } = props;

  useLayoutEffect(() => {
    const element = ref.current;
    if (!element) return;
    setHeight(element.clientHeight);
    const observer = new ResizeObserver(() => setHeight(element.clientHeight));
    observer.observe(element);
    return () => observer.disconnect();
  }, []);

  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - OVERSCAN);
  const last = Math.min(items.length, Math.ceil((scrollTop + height) / rowHeight) + OVERSCAN);

  const nearEnd = props.onNearEnd;
  useEffect(() => {
    if (nearEnd && last >= items.length - OVERSCAN) nearEnd();
  }, [last, items.length, nearEnd]);

  useEffect(() => {
    const element = ref.current;
    const index = props.focusIndex;
    if (!element || index === undefined || index < 0) return;
    const top = index * rowHeight;
    if (top < element.scrollTop) element.scrollTop = top;
    else if (top + rowHeight > element.scrollTop + element.clientHeight) {
      element.scrollTop = top + rowHeight - element.clientHeight;
    }
  }, [props.focusIndex, rowHeight]);

  return (
    <div
      ref={ref}
      class={props.class ? `vlist ${props.class}` : "vlist"}
      onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
    >
      <ul aria-label={props.label} style={{ height: `${items.length * rowHeight}px` }}>
        {items.slice(first, last).map((item, offset) => (
          <li
            key={props.keyOf(item)}
            style={{ top: `${(first + offset) * rowHeight}px`, height: `${rowHeight}px` }}
            aria-setsize={items.length}
            aria-posinset={first + offset + 1}
          >
            {props.render(item, first + offset)}
          </li>
        ))}
      </ul>
    </div>
  );
}

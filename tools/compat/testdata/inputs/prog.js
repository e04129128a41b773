function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
var out = [];
for (var i = 0; i < 20; i++) out.push(fib(i));
console.log(JSON.stringify(out));
console.log([3, 1, 2].sort().map(function (x) { return x * x; }).join(","));
console.log(JSON.stringify({a: [1, {b: "c"}], d: null}, null, 1));
console.log(new Date(Date.UTC(2024, 6, 1)).toISOString());
console.log(/(\w+)@(\w+)\.com/.exec("mail bob@example.com now")[2]);

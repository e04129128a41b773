local person(name, age) = { name: name, age: age, adult: age >= 18 };
{
  people: [person('ann', 31), person('bob', 12)],
  total: std.foldl(function(acc, p) acc + p.age, self.people, 0),
  upper: std.asciiUpper('jsonnet'),
  sorted: std.sort([3, 1, 2]),
}
